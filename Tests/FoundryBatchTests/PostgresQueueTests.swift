import Foundation
import Testing
import FoundryTestSupport
@testable import FoundryBatch

/// What only the PostgreSQL queue must do: run each step again when the answer of its
/// commit was lost with the connection, and leave the queue as if it had run once.
@Suite(.enabled(if: TestPostgres.url != nil || TestPostgres.required))
struct PostgresQueueTests {
    func loaded(_ count: Int) async throws -> (Fixture, PostgresQueue) {
        let fixture = try await Fixture(queue: .postgres)
        _ = try await fixture.load((1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        return (fixture, try #require(fixture.queue as? PostgresQueue))
    }

    /// `count` rows, each answered with about 300 bytes: an export of them takes many packets.
    func answered(_ count: Int) async throws -> (Fixture, PostgresQueue) {
        let (fixture, queue) = try await loaded(count)
        let now = Date()
        let rows = try await queue.claim(owner: "A", limit: count, leaseUntil: now + 60, now: now)
        let body = #"{"answer":"\#(String(repeating: "x", count: 300))"}"#
        let record = ResponseRecord(statusCode: 200, requestID: "req", clientRequestID: "cid", body: body, promptTokens: 3, completionTokens: 4, totalTokens: 7, latencyMs: 12)
        _ = try await queue.complete(rows.map { Completion(seq: $0.seq, owner: "A", outcome: .succeeded(record)) }, now: now)
        return (fixture, queue)
    }

    @Test func aClaimWhoseAnswerWasLostTakesBackTheRowsItLeased() async throws {
        let (fixture, queue) = try await loaded(10)
        let now = Date()
        queue.loseAnswers(1)
        let first = try await queue.claim(owner: "A", limit: 4, leaseUntil: now + 60, now: now)
        #expect(first.map(\.id) == ["r1", "r2", "r3", "r4"], "the rows the lost answer had leased, not four more")
        #expect(try await queue.counts().job.running == 4, "no row stays leased without its runner knowing")
        let rest = try await queue.claim(owner: "A", limit: 100, leaseUntil: now + 60, now: now)
        #expect(rest.map(\.id) == (5...10).map { "r\($0)" })
        withExtendedLifetime(fixture) {}
    }

    @Test func aCompletionWhoseAnswerWasLostCountsOnce() async throws {
        let (_, queue) = try await loaded(2)
        let now = Date()
        let rows = try await queue.claim(owner: "A", limit: 2, leaseUntil: now + 60, now: now)
        let record = ResponseRecord(statusCode: 200, requestID: "req", clientRequestID: "cid", body: #"{"ok":true}"#, promptTokens: 3, completionTokens: 4, totalTokens: 7, latencyMs: 12)
        queue.loseAnswers(1)
        _ = try await queue.complete(rows.map { Completion(seq: $0.seq, owner: "A", outcome: .succeeded(record)) }, now: now)
        let counts = try await queue.counts().job
        #expect(counts.succeeded == 2 && counts.running == 0)
        let attempts = try await queue.storage { connection in try await queue.value(Int.self, connection, "SELECT sum(attempts)::bigint FROM §rows") }
        #expect(attempts == 2, "one attempt a row, though the step ran twice")
    }

    @Test func aLoadWhoseAnswerWasLostAddsEachRowOnce() async throws {
        let fixture = try await Fixture(queue: .postgres)
        let queue = try #require(fixture.queue as? PostgresQueue)
        queue.loseAnswers(1)
        let report = try await fixture.load((1...700).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        #expect(report.inserted == 0 && report.unchanged == 700, "the second run of the load found the first one's rows")
        #expect(try await queue.counts().job.total == 700)
    }

    @Test func aStepLongerThanThePatienceThatLosesItsAnswerIsStillTriedAgain() async throws {
        // The outage starts when the server last answered, not when the step began: a load
        // of an hour that loses its connection at the end gets the whole patience too.
        let queue = try await TestPostgres.queue(jobName: "long-step", patience: 3)
        defer { queue.close() }
        let runs = Counter()
        queue.loseAnswers(1)
        let answer = try await queue.storage(.long) { [queue] connection in
            runs.increment()
            try await Task.sleep(for: .seconds(4))
            return try await queue.value(Int.self, connection, "SELECT 42")
        }
        #expect(answer == 42 && runs.value == 2, "ran again after its answer was lost")
    }

    @Test func aConnectionCutInTheMiddleOfAnExportIsTriedAgainWhereItStopped() async throws {
        // postgres-nio traps (SIGILL) when the server's last bytes reach a row stream that
        // is not asking for rows; the ReadGate in front of it must turn that into a retry.
        let (fixture, queue) = try await answered(3000)

        let proxy = try await CuttingProxy.start(to: queue.location.host, port: queue.location.port, cutAfter: 400_000)
        defer { Task { await proxy.stop() } }
        let behind = try await TestPostgres.queue(jobName: fixture.job.name, schema: queue.location.schema, port: proxy.port)
        defer { behind.close() }
        var ids: [String] = []
        try await behind.forEachFinished { row in
            // A slow reader: the server's bytes wait in the socket, as behind a real disk.
            if ids.count % 100 == 0 { usleep(2_000) }
            ids.append(row.id)
        }
        #expect(proxy.cuts == 1, "the cut came during the export")
        #expect(ids == (1...3000).map { "r\($0)" }, "every row once, in order, though the stream was cut")
    }

    /// A queue of `queue`'s schema that reaches the database through `proxy`.
    func behind(_ proxy: CuttingProxy, _ queue: PostgresQueue, job: String, patience: TimeInterval) async throws -> PostgresQueue {
        try await TestPostgres.queue(jobName: job, patience: patience, schema: queue.location.schema, port: proxy.port)
    }

    @Test(.timeLimit(.minutes(1)))
    func aStepWhoseConnectionIsCutUnderEveryTryStopsOnceThePatienceIsSpent() async throws {
        // The server answers every try, so no outage lasts: without a bound of its own, the
        // step would start again forever.
        let queue = try await TestPostgres.queue(jobName: "cut-every")
        defer { queue.close() }
        let proxy = try await CuttingProxy.start(to: queue.location.host, port: queue.location.port, cutAfter: 30_000, every: true)
        defer { Task { await proxy.stop() } }
        // A patience of seconds: a shorter one can run out on a busy machine's slow statement.
        let cut = try await behind(proxy, queue, job: "cut-every", patience: 3)
        defer { cut.close() }
        let runs = Counter()
        do {
            try await cut.storage(.long) { [cut] connection in
                runs.increment()
                for _ in 1...20 { try await cut.run(connection, "SELECT repeat('x', 5000)") }
            }
            Issue.record("a step cut under every try ended")
        } catch let error as StateUnreachable {
            #expect(error.reason.contains("lost under the same step") && !error.interrupted, "\(error)")
        }
        #expect(runs.value >= PostgresQueue.fruitlessTries && proxy.cuts >= PostgresQueue.fruitlessTries, "\(runs.value) tries")
    }

    @Test func anExportCutAgainAndAgainGoesOnAsLongAsEachTryBringsRows() async throws {
        let (fixture, queue) = try await answered(3000)

        let proxy = try await CuttingProxy.start(to: queue.location.host, port: queue.location.port, cutAfter: 150_000, every: true)
        defer { Task { await proxy.stop() } }
        let cut = try await behind(proxy, queue, job: fixture.job.name, patience: 3)
        defer { cut.close() }
        var ids: [String] = []
        try await cut.forEachFinished { row in
            // Slower than the patience in all (4.5 s), so the cuts span more than it.
            usleep(1500)
            ids.append(row.id)
        }
        #expect(proxy.cuts > PostgresQueue.fruitlessTries, "\(proxy.cuts) cuts")
        #expect(ids == (1...3000).map { "r\($0)" }, "every row once, in order")
        withExtendedLifetime(fixture) {}
    }

    @Test(.timeLimit(.minutes(1)))
    func anInterruptEndsAStatementThatWaitsOnAStalledDatabase() async throws {
        // Without it, the statement would wait its whole answer timeout (here 600 s).
        let queue = try await TestPostgres.queue(jobName: "stalled")
        defer { queue.close() }
        let proxy = try await CuttingProxy.start(to: queue.location.host, port: queue.location.port, cutAfter: .max)
        defer { Task { await proxy.stop() } }
        let stalled = try await behind(proxy, queue, job: "stalled", patience: 600)
        defer { stalled.close() }
        proxy.stall()
        let control = RunControl()
        let interrupt = Task {
            try await Task.sleep(for: .milliseconds(300))
            await control.stop(.interrupted)
        }
        defer { interrupt.cancel() }
        do {
            try await RunControl.$current.withValue(control) {
                try await stalled.storage { [stalled] connection in try await stalled.run(connection, "SELECT 1") }
            }
            Issue.record("a statement answered through a stalled proxy")
        } catch let error as StateUnreachable {
            #expect(error.interrupted, "\(error)")
        }
    }

    @Test func theServersErrorTextIsCleanedAndCutAndARefusedPermissionSaysWhatToGrant() async throws {
        let queue = try await TestPostgres.queue(jobName: "error-text")
        defer { queue.close() }
        func refusal(_ sql: String) async -> String {
            do {
                try await queue.storage { [queue] connection in try await queue.run(connection, sql) }
                return ""
            } catch {
                return "\(error)"
            }
        }
        let hostile = await refusal("DO $$ BEGIN RAISE EXCEPTION '%', E'red \\x1b[31m\\r\\nline ' || repeat('x', 100000); END $$")
        #expect(hostile.contains("red") && hostile.contains("(SQLSTATE P0001)"), "\(hostile.prefix(300))")
        #expect(!hostile.unicodeScalars.contains { $0.properties.generalCategory == .control }, "no escape, no line break")
        #expect(hostile.count < 1500, "cut to 1,000 characters of the server's, not 100 KB: \(hostile.count)")
        let denied = await refusal("DO $$ BEGIN RAISE EXCEPTION 'permission denied for database' USING ERRCODE = '42501'; END $$")
        #expect(denied.contains("GRANT CREATE ON DATABASE"), "\(denied)")
    }

    @Test func tlsThatTheServerDoesNotOfferIsASettingToFixNotAnOutageToWaitOut() async throws {
        // The test cluster runs without TLS: `prefer` (every other test) goes on in plain
        // TCP, `require` must say so at once instead of retrying for the patience.
        let url = try #require(TestPostgres.url)
        let location = try PostgresLocation(url: url + (url.contains("?") ? "&" : "?") + "schema=t_tls&sslmode=require", jobName: "tls")
        do {
            _ = try await PostgresQueue.open(location, jobName: "tls", password: try location.password(), patience: 600)
            Issue.record("opened a queue without the TLS its URL requires")
        } catch let error as StorageError {
            #expect(error.description.contains("does not offer TLS") && error.description.contains("sslmode=prefer"), "\(error)")
        }
    }

    @Test func aLargeGroupIsSentAsSeveralDocumentsOfBoundedSize() throws {
        let rows = (1...5).map { seq in
            PostgresQueue.CompletedRow(
                Completion(seq: Int64(seq), owner: "A", outcome: .succeeded(ResponseRecord(statusCode: 200, requestID: nil, clientRequestID: "c", body: String(repeating: "x", count: 300), latencyMs: 1))),
                now: Date()
            )
        }
        let documents = try PostgresQueue.documents(rows, limit: 1000)
        #expect(documents.count == 3, "two rows of about 450 bytes fit in 1,000")
        #expect(documents.allSatisfy { $0.utf8.count <= 1000 })
        let seqs = try documents.flatMap { document in
            try #require(try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [[String: Any]]).compactMap { $0["seq"] as? Int }
        }
        #expect(seqs == [1, 2, 3, 4, 5], "every row once, in order")
        #expect(try PostgresQueue.documents(Array(rows.prefix(1)), limit: 10).count == 1, "a row larger than the limit goes alone")
    }

    @Test func anAnswerHoldingANulCharacterIsStoredWithAReplacement() async throws {
        // PostgreSQL text cannot hold U+0000: one such answer must not fail its whole group.
        let (fixture, queue) = try await loaded(2)
        let now = Date()
        let rows = try await queue.claim(owner: "A", limit: 2, leaseUntil: now + 60, now: now)
        let completions = rows.map { row in
            Completion(seq: row.seq, owner: "A", outcome: .succeeded(ResponseRecord(statusCode: 200, requestID: "r", clientRequestID: "c", body: "{\"a\":\"x\u{0}y\"}", latencyMs: 1)))
        }
        #expect(try await queue.complete(completions, now: now) == 2)
        let stored = try await queue.storage { connection in try await queue.fetch(String.self, connection, "SELECT response FROM §rows ORDER BY seq") }
        #expect(stored == ["{\"a\":\"x\u{FFFD}y\"}", "{\"a\":\"x\u{FFFD}y\"}"])
        withExtendedLifetime(fixture) {}
    }

    @Test func aBatchCutWhoseAnswerWasLostIsFoundAgainNotCutTwice() async throws {
        let (fixture, queue) = try await loaded(6)
        queue.loseAnswers(1)
        let cut = BatchCut(target: "default", model: "gpt-5-mini", api: .chat, maxRows: 4, maxBytes: 1 << 30, lineOverhead: 100)
        let batch = try #require(try await queue.cutBatch(cut, now: Date()))
        #expect(batch.rows == 4 && batch.number == 1, "the batch the lost answer had made")
        #expect(try await queue.batches().map(\.number) == [1], "no second batch")
        var lines: [String] = []
        try await queue.forEachBatchLine(number: batch.number) { lines.append($0.id) }
        #expect(lines == ["r1", "r2", "r3", "r4"])
        #expect(try await queue.counts().job.pending == 2)
        withExtendedLifetime(fixture) {}
    }
}
