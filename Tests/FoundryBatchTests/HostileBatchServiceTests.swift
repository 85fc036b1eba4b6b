import AsyncHTTPClient
import FoundryTestSupport
import Foundation
import GRDB
import Logging
import Synchronization
import Testing
@testable import FoundryBatch

/// The batch engine against a Batch API that misbehaves: each test scripts a small server on
/// loopback, and checks that nothing crashes or hangs, no row is lost or doubled, and no key
/// goes where it must not.
@Suite(.timeLimit(.minutes(1))) struct HostileBatchServiceTests {
    static let key = "hostile-batch-key"

    /// A Batch API whose batches complete at the first poll with an answer for every line,
    /// unless the test's `poll` or `output` say otherwise.
    final class Provider: Sendable {
        struct State {
            var files: [[String]] = []
            var polls = 0
            var creates = 0
            var cancels = 0
            var downloads = 0
            var lists = 0
        }
        let state = Mutex(State())
        /// The answer to the `index`-th poll of batch `number` (nil: completed).
        let poll: @Sendable (_ number: Int, _ index: Int) -> [ScriptedServer.Action]?
        /// The output file of batch `number` for its custom ids (nil: an answer for each).
        let output: @Sendable (_ number: Int, _ ids: [String]) -> String?
        /// The answer to the `index`-th create, once the batch is made (nil: the batch).
        let created: @Sendable (_ index: Int) -> [ScriptedServer.Action]?
        /// The answer to the `index`-th download (nil: the file).
        let download: @Sendable (_ index: Int, _ file: String) -> [ScriptedServer.Action]?

        init(
            poll: @escaping @Sendable (Int, Int) -> [ScriptedServer.Action]? = { _, _ in nil },
            output: @escaping @Sendable (Int, [String]) -> String? = { _, _ in nil },
            created: @escaping @Sendable (Int) -> [ScriptedServer.Action]? = { _ in nil },
            download: @escaping @Sendable (Int, String) -> [ScriptedServer.Action]? = { _, _ in nil }
        ) {
            self.poll = poll
            self.output = output
            self.created = created
            self.download = download
        }

        static func answer(_ id: String) -> String {
            #"{"id":"batch_req_\#(id)","custom_id":"\#(id)","response":{"status_code":200,"request_id":"q-\#(id)","body":{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}},"error":null}"#
        }

        static func batch(_ number: Int, status: String, files: Bool = true) -> String {
            let ids = files ? #""output_file_id":"out-\#(number)","error_file_id":null,"# : ""
            return #"{"id":"batch_\#(number)","object":"batch","status":"\#(status)","input_file_id":"file-\#(number)",\#(ids)"created_at":1700000000,"expires_at":1900000000,"request_counts":{"total":3,"completed":3,"failed":0}}"#
        }

        func script(_ request: ScriptedServer.Request, _ index: Int) -> [ScriptedServer.Action] {
            let path = request.target.split(separator: "?").first.map(String.init) ?? ""
            switch (request.method, path) {
            case ("POST", "/openai/v1/files"):
                let ids = request.bodyText.split(separator: "\n").compactMap { line -> String? in
                    guard let range = line.range(of: #""custom_id":""#) else { return nil }
                    return String(line[range.upperBound...].prefix { $0 != "\"" })
                }
                let number = state.withLock { state in
                    state.files.append(ids)
                    return state.files.count
                }
                return [.send(ScriptedServer.json(#"{"id":"file-\#(number)","object":"file","purpose":"batch","status":"processed"}"#))]
            case ("POST", "/openai/v1/batches"):
                let (number, index) = state.withLock { state in
                    state.creates += 1
                    return (state.files.count, state.creates - 1)
                }
                return created(index) ?? [.send(ScriptedServer.json(Self.batch(number, status: "validating", files: false)))]
            case ("GET", "/openai/v1/batches"):
                let count = state.withLock { state in
                    state.lists += 1
                    return state.creates
                }
                let data = (0..<count).reversed().map { Self.batch($0 + 1, status: "in_progress", files: false) }.joined(separator: ",")
                return [.send(ScriptedServer.json(#"{"object":"list","data":[\#(data)],"has_more":false}"#))]
            case ("POST", let path) where path.hasSuffix("/cancel"):
                state.withLock { $0.cancels += 1 }
                let number = Int(path.dropFirst("/openai/v1/batches/batch_".count).prefix { $0.isNumber }) ?? 0
                return [.send(ScriptedServer.json(Self.batch(number, status: "in_progress", files: false)))]
            case ("GET", let path) where path.hasPrefix("/openai/v1/batches/batch_"):
                let number = Int(path.dropFirst("/openai/v1/batches/batch_".count)) ?? 0
                let index = state.withLock { state in
                    state.polls += 1
                    return state.polls - 1
                }
                return poll(number, index) ?? [.send(ScriptedServer.json(Self.batch(number, status: "completed")))]
            case ("GET", let path) where path.hasPrefix("/openai/v1/files/out-"):
                let number = Int(path.dropFirst("/openai/v1/files/out-".count).prefix { $0.isNumber }) ?? 0
                let index = state.withLock { state in
                    state.downloads += 1
                    return state.downloads - 1
                }
                if let answer = download(index, "out-\(number)") { return answer }
                let ids = state.withLock { $0.files.indices.contains(number - 1) ? $0.files[number - 1] : [] }
                let text = output(number, ids) ?? ids.map(Self.answer).joined(separator: "\n") + "\n"
                return [.send(ScriptedServer.response(status: 200, headers: [("Content-Type", "application/octet-stream")], body: text))]
            default:
                return [.send(ScriptedServer.json(status: 404, #"{"error":{"code":"404","message":"Resource not found"}}"#))]
            }
        }
    }

    func run(
        _ fixture: Fixture, _ server: ScriptedServer, wait: Bool = true, maxAttempts: Int? = nil, control: RunControl = RunControl()
    ) async throws -> RunSummary {
        let http = HTTPClient.forRun(concurrency: 4)
        let target = ServiceTarget(baseURL: server.baseURL, apiVersion: nil, authorization: .apiKey(Self.key))
        let session = try fixture.session(maxAttempts: maxAttempts)
        do {
            let summary = try await BatchRun.execute(
                session: session, service: ServiceSession(http: http, target: target),
                options: RunOptions(progress: .none, gracePeriod: 1, wait: wait), control: control
            )
            try await http.shutdown()
            return summary
        } catch {
            try await http.shutdown()
            throw error
        }
    }

    func loaded(_ rows: Int = 3, limits: String = "timeout: 5, max_retry_wait: 20") async throws -> Fixture {
        let fixture = try await Fixture(yaml: "engine: batch\nbatch: {poll_interval: 0.05}\nlimits: {\(limits)}\n")
        _ = try await fixture.load((1...rows).map { "{\"id\": \"p\($0)\", \"prompt\": \"Question \($0)\"}" }.joined(separator: "\n"))
        return fixture
    }

    @Test func aThrottledPollIsTriedAgainAfterItsDelay() async throws {
        let fixture = try await loaded()
        let provider = Provider(poll: { _, index in
            index == 0 ? [.send(ScriptedServer.json(status: 429, headers: [("retry-after-ms", "100")], #"{"error":{"code":"429","message":"slow down"}}"#))] : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            #expect(summary.counts.succeeded == 3)
            #expect(fixture.directory.jsonLines("out/test.jsonl").count == 3)
        }
    }

    @Test func aRetryAfterBeyondMaxRetryWaitStopsAndLeavesTheBatchToResume() async throws {
        let fixture = try await loaded()
        let refuse = Mutex(true)
        let provider = Provider(poll: { _, _ in
            refuse.withLock { $0 } ? [.send(ScriptedServer.json(status: 429, headers: [("retry-after", "100000")], #"{"error":{"code":"429","message":"later"}}"#))] : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let stopped = try await run(fixture, server)
            #expect(stopped.exitStatus == .stopped)
            #expect(stopped.stop?.message.contains("max_retry_wait") == true, "\(stopped.text)")
            #expect(try await fixture.queue.batches().first?.phase == .submitted, "the batch lives on at the provider")
            refuse.withLock { $0 = false }
            let resumed = try await run(fixture, server)
            #expect(resumed.exitStatus == .success, "\(resumed.text)")
            #expect(provider.state.withLock { $0.creates } == 1, "the rerun polled the same batch")
        }
    }

    @Test func aRedirectedUploadStopsTheRunAndTheKeyStaysHome() async throws {
        let fixture = try await loaded()
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json("{}"))] }) { elsewhere in
            try await ScriptedServer.withRunning({ _, _ in
                [.send(ScriptedServer.response(status: 307, headers: [("Location", "\(elsewhere.baseURL)/steal")]))]
            }) { server in
                let summary = try await run(fixture, server)
                #expect(summary.exitStatus == .stopped)
                #expect(summary.stop?.message.contains("redirect") == true, "\(summary.text)")
                #expect(elsewhere.requests.isEmpty)
                #expect(!(summary.stop?.message.contains(Self.key) ?? true))
            }
        }
    }

    @Test func oddOutputLinesAreSkippedAndEveryRowEndsOnce() async throws {
        let fixture = try await loaded()
        let provider = Provider(output: { number, ids in
            guard number == 1 else { return nil }
            // Garbage, a stranger's row, p1 answered twice, p2's body not an object, CRLF ends;
            // p3 is missing: it goes in the next batch with p2.
            return ["not json", Provider.answer("r999"), Provider.answer(ids[0]), Provider.answer(ids[0]),
                    #"{"custom_id":"\#(ids[1])","response":{"status_code":200,"body":"text"}}"#].joined(separator: "\r\n") + "\r\n"
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            let ids = fixture.directory.jsonLines("out/test.jsonl").compactMap { $0["custom_id"]?.stringValue }
            #expect(ids.sorted() == ["p1", "p2", "p3"])
            #expect(provider.state.withLock { $0.files.count } == 2)
            #expect(provider.state.withLock { $0.files.last?.count } == 2, "the second file holds only the two unfinished rows")
        }
    }

    @Test func aBatchEndingWithoutFilesReturnsItsRowsCountingAnAttempt() async throws {
        let fixture = try await loaded()
        let provider = Provider(poll: { number, _ in
            number == 1 ? [.send(ScriptedServer.json(Provider.batch(1, status: "completed", files: false)))] : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            #expect(provider.state.withLock { $0.creates } == 2)
            let attempts = try await fixture.pool.read { try Int.fetchAll($0, sql: "SELECT attempts FROM rows") }
            #expect(attempts == [2, 2, 2], "one unfinished try, one answered")
        }
    }

    @Test func anUnknownStatusIsPolledAgainAndNoWaitSaysTheBatchStillRuns() async throws {
        let fixture = try await loaded()
        let provider = Provider(poll: { _, index in index < 3 ? [.send(ScriptedServer.json(Provider.batch(1, status: "weird")))] : nil })
        try await ScriptedServer.withRunning(provider.script) { server in
            let first = try await run(fixture, server, wait: false)
            #expect(first.exitStatus == .batchesRunning)
            #expect(first.liveBatches == 1)
            let second = try await run(fixture, server)
            #expect(second.exitStatus == .success, "\(second.text)")
            #expect(provider.state.withLock { $0.creates } == 1)
        }
    }

    @Test func theTokenBudgetHoldsForBatchesToo() async throws {
        let fixture = try await loaded(limits: "timeout: 5, max_tokens_total: 1")
        try await ScriptedServer.withRunning(Provider().script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .stopped)
            #expect(summary.stop?.message.contains("max_tokens_total") == true, "\(summary.text)")
            #expect(server.requests.isEmpty, "nothing was uploaded")
            #expect(try await fixture.queue.counts().job.pending == 3)
        }
    }

    @Test func aCreateWithoutAClearAnswerIsLookedForAndNeverMadeTwice() async throws {
        let fixture = try await loaded()
        // The batch is made, then the connection drops before the answer; then a 502.
        let provider = Provider(created: { index in
            index == 0 ? [.close] : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            #expect(provider.state.withLock { $0.creates } == 1, "the batch of the lost answer was adopted")
            #expect(provider.state.withLock { $0.lists } >= 1)
            #expect(fixture.directory.jsonLines("out/test.jsonl").count == 3)
        }
    }

    @Test func aStalledDownloadTimesOutAndIsTriedAgain() async throws {
        let fixture = try await loaded(limits: "timeout: 1, max_retry_wait: 20")
        let provider = Provider(download: { index, _ in
            index == 0
                ? [.send(ScriptedServer.head(status: 200, headers: [("Content-Length", "100000")]) + Array("{\"custom".utf8)), .pause(seconds: 600)]
                : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let started = Date()
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            // A guard against a hang, not a timing: without the timeout the run would wait out
            // the 600 s stall; with it, even a loaded machine is done in a small part of that.
            #expect(Date().timeIntervalSince(started) < 120, "the stall ended at limits.timeout")
            #expect(provider.state.withLock { $0.downloads } == 2)
        }
    }

    @Test func anOutputFileTheProviderNoLongerHasSendsItsRowsAgain() async throws {
        let fixture = try await loaded()
        let provider = Provider(download: { index, _ in
            index == 0 ? [.send(ScriptedServer.json(status: 404, #"{"error":{"code":"NotFound","message":"The file was not found."}}"#))] : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            #expect(provider.state.withLock { $0.creates } == 2)
            #expect(fixture.directory.jsonLines("out/test.jsonl").count == 3)
        }
    }

    @Test func aBatchTheProviderDoesNotKnowReturnsItsRowsWithoutAnAttempt() async throws {
        let fixture = try await loaded()
        let provider = Provider(poll: { number, _ in
            number == 1 ? [.send(ScriptedServer.json(status: 404, #"{"error":{"code":"NotFound","message":"Batch not found."}}"#))] : nil
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .success, "\(summary.text)")
            #expect(provider.state.withLock { $0.creates } == 2)
            let attempts = try await fixture.pool.read { try Int.fetchAll($0, sql: "SELECT attempts FROM rows") }
            #expect(attempts == [1, 1, 1], "only the answered try counts")
        }
    }

    @Test func aStopEndsTheWaitBetweenTriesOfAControlCall() async throws {
        let fixture = try await loaded()
        let provider = Provider(poll: { _, _ in [.send(ScriptedServer.json(status: 500, #"{"error":{"code":"server_error","message":"boom"}}"#))] })
        try await ScriptedServer.withRunning(provider.script) { server in
            let control = RunControl()
            let started = Date()
            // Stopped while the poll is between tries (the provider has answered 500 once).
            let stopper = Task {
                while provider.state.withLock({ $0.polls }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
                try await Task.sleep(for: .milliseconds(300))
                await control.stop(.interrupted)
            }
            let summary = try await run(fixture, server, control: control)
            _ = try await stopper.value
            #expect(summary.exitStatus == .interrupted, "\(summary.text)")
            #expect(Date().timeIntervalSince(started) < 20, "not the back-off's whole wait (eight tries: about two minutes)")
            #expect(try await fixture.queue.batches().first?.phase == .submitted, "the batch keeps running at the provider")
        }
    }

    @Test func aCancelIsSentOnceWhileTheProviderStillSaysInProgress() async throws {
        let fixture = try await loaded()
        let provider = Provider(poll: { _, index in
            index < 6 ? [.send(ScriptedServer.json(Provider.batch(1, status: "in_progress")))] : [.send(ScriptedServer.json(Provider.batch(1, status: "cancelled")))]
        })
        try await ScriptedServer.withRunning(provider.script) { server in
            let submitted = try await run(fixture, server, wait: false)
            #expect(submitted.exitStatus == .batchesRunning)
            let http = HTTPClient.forRun(concurrency: 2)
            let target = ServiceTarget(baseURL: server.baseURL, apiVersion: nil, authorization: .apiKey(Self.key))
            let cancelled = try await BatchRun.cancel(
                session: try fixture.session(), service: ServiceSession(http: http, target: target), control: RunControl(), logger: .init(label: "test")
            )
            try await http.shutdown()
            #expect(cancelled == 1)
            #expect(provider.state.withLock { $0.cancels } == 1)
            #expect(try await fixture.queue.counts().job.succeeded == 3, "what the cancelled batch finished is kept")
        }
    }

    @Test func aValidationFailureStopsNamingTheFileAndTheReason() async throws {
        let fixture = try await loaded()
        let failed = #"{"id":"batch_1","status":"failed","input_file_id":"file-1","errors":{"object":"list","data":[{"code":"model_not_found","message":"The provided model deployment 'gpt-5-mini' does not exist.","line":1,"param":null}]}}"#
        let provider = Provider(poll: { _, _ in [.send(ScriptedServer.json(failed))] })
        try await ScriptedServer.withRunning(provider.script) { server in
            let summary = try await run(fixture, server)
            #expect(summary.exitStatus == .stopped)
            let message = summary.stop?.message ?? ""
            #expect(message.contains("model_not_found") && message.contains("foundry-batch-1.jsonl") && message.contains("line 1"), "\(message)")
            let counts = try await fixture.queue.counts().job
            #expect(counts.pending == 3, "the rows return to pending")
        }
    }
}
