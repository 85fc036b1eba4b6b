import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// The queue's side of the batch engine, on every implementation: rows bound to one batch
/// at a time, files cut within both limits, and a batch's rows settled through `complete`.
@Suite struct BatchQueueTests {
    func loaded(_ lines: [String], _ kind: QueueKind) async throws -> Fixture {
        let fixture = try await Fixture(queue: kind)
        _ = try await fixture.load(lines.joined(separator: "\n"))
        return fixture
    }

    func simple(_ count: Int) -> [String] {
        (1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }
    }

    func cut(_ model: String = "gpt-5-mini", rows: Int = 1000, bytes: Int = 1 << 30) -> BatchCut {
        BatchCut(target: "default", model: model, api: .chat, maxRows: rows, maxBytes: bytes, lineOverhead: 100)
    }

    @Test(arguments: QueueKind.allCases) func aCutBindsRowsToOneBatchAndNoOtherClaimTakesThem(_ kind: QueueKind) async throws {
        let fixture = try await loaded(simple(5), kind)
        let now = Date()
        let batch = try #require(try await fixture.queue.cutBatch(cut(rows: 3), now: now))
        #expect(batch.rows == 3 && batch.phase == .cut && batch.number == 1)
        #expect(try await fixture.queue.claim(owner: "w", limit: 10, leaseUntil: now + 60, now: now).map(\.id) == ["r4", "r5"])
        #expect(try await fixture.queue.cutBatch(cut(), now: now) == nil, "every row is held")
        // A batch's lease never expires, and no dead-process sweep takes its rows.
        #expect(try await fixture.queue.reclaimExpired(now: now + 86_400 * 365) == 2)
        var lines: [String] = []
        try await fixture.queue.forEachBatchLine(number: batch.number) { lines.append($0.id) }
        #expect(lines == ["r1", "r2", "r3"])
        #expect(try await fixture.queue.counts().job.running == 3)
    }

    @Test(arguments: QueueKind.allCases) func filesStayWithinTheByteLimitAndTakeAtLeastOneRow(_ kind: QueueKind) async throws {
        let fixture = try await loaded(simple(10), kind)
        var line: BatchLine?
        let first = try #require(try await fixture.queue.cutBatch(cut(bytes: 1), now: Date()))
        #expect(first.rows == 1, "a row larger than the limit still goes, alone")
        try await fixture.queue.forEachBatchLine(number: first.number) { line = $0 }
        let size = try #require(line).body.utf8.count + 100
        let second = try #require(try await fixture.queue.cutBatch(cut(bytes: size * 3 + 1), now: Date()))
        #expect(second.rows == 3)
        #expect(second.bytes <= size * 3 + 1)
        #expect(try await fixture.queue.batches().map(\.number) == [1, 2])
    }

    @Test(arguments: QueueKind.allCases) func aCutHoldsNoMoreEstimatedTokensThanTheBudgetLeaves(_ kind: QueueKind) async throws {
        let fixture = try await loaded(simple(6), kind)
        var line: BatchLine?
        var probe = cut()
        probe.maxRows = 1
        let first = try #require(try await fixture.queue.cutBatch(probe, now: Date()))
        try await fixture.queue.forEachBatchLine(number: first.number) { line = $0 }
        let each = try await fixture.queue.report().pendingPromptTokens / 5
        #expect(first.tokens == each && each > 0 && line != nil)
        var budgeted = cut()
        budgeted.maxTokens = each * 2 + each / 2
        let second = try #require(try await fixture.queue.cutBatch(budgeted, now: Date()))
        #expect(second.rows == 2 && second.tokens == each * 2)
        budgeted.maxTokens = each - 1
        #expect(try await fixture.queue.cutBatch(budgeted, now: Date()) == nil, "not even one row beyond the budget")
        #expect(try await fixture.queue.batches().map(\.tokens) == [each, each * 2])
    }

    @Test(arguments: QueueKind.allCases) func groupsAreOnePerModelAndAPI(_ kind: QueueKind) async throws {
        let lines = [
            #"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [{"role": "user", "content": "x"}]}}"#,
            #"{"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m2", "messages": [{"role": "user", "content": "y"}]}}"#,
            #"{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [{"role": "user", "content": "z"}]}}"#,
        ]
        let fixture = try await loaded(lines, kind)
        let groups = try await fixture.queue.pendingGroups(now: Date())
        #expect(groups.map(\.model) == ["m1", "m2"])
        #expect(groups.map(\.rows) == [2, 1])
        let batch = try #require(try await fixture.queue.cutBatch(cut("m1"), now: Date()))
        #expect(batch.rows == 2)
        #expect(try await fixture.queue.pendingGroups(now: Date()).map(\.model) == ["m2"])
    }

    @Test(arguments: QueueKind.allCases) func aBatchsAnswersCommitAndItsStateIsKept(_ kind: QueueKind) async throws {
        let fixture = try await loaded(simple(3), kind)
        let now = Date()
        var batch = try #require(try await fixture.queue.cutBatch(cut(), now: now))
        batch.phase = .submitted
        batch.fileID = "file-1"
        batch.batchID = "batch_1"
        batch.status = "in_progress"
        batch.completed = 2
        batch.endsBy = now + 86_400
        try await fixture.queue.updateBatch(batch)
        let stored = try #require(try await fixture.queue.batches().first)
        #expect(stored.phase == .submitted && stored.batchID == "batch_1" && stored.fileID == "file-1" && stored.completed == 2)
        #expect(abs((stored.endsBy ?? .distantPast).timeIntervalSince(now + 86_400)) < 0.01)
        let response = ResponseRecord(statusCode: 200, requestID: "q", clientRequestID: "l1", body: "{}", promptTokens: 10, completionTokens: 20, latencyMs: 5)
        let applied = try await fixture.queue.complete(
            [
                Completion(seq: 1, owner: batch.rowOwner, outcome: .succeeded(response), batch: batch.number),
                Completion(seq: 2, owner: "someone-else", outcome: .succeeded(response), batch: batch.number),
                Completion(seq: 3, owner: batch.rowOwner, outcome: .retry(at: now, error: RowError(code: "batch_expired", message: "x"), response: nil), batch: batch.number),
            ],
            now: now
        )
        #expect(applied == 2, "only the batch's own rows")
        let counts = try await fixture.queue.counts().job
        #expect(counts.succeeded == 1 && counts.pending == 1 && counts.running == 1)
        #expect(counts.batchPromptTokens == 10 && counts.batchCompletionTokens == 20)
        #expect(JobFile.Prices(promptPer1K: 1, completionPer1K: 1, batchFactor: 0.5).cost(counts) == 0.015)
        var held: [Int64] = []
        try await fixture.queue.forEachBatchLine(number: batch.number) { held.append($0.seq) }
        #expect(held == [2])
        #expect(try await fixture.queue.claim(owner: "w", limit: 5, leaseUntil: now + 60, now: now).first?.attempts == 1)
    }
}

@Suite struct BatchObjectTests {
    @Test func readsOpenAIsSpellingAndUnixTimes() throws {
        let json = try JSONParser.parse(
            #"{"id":"batch_1","object":"batch","status":"in_progress","input_file_id":"file-a","output_file_id":null,"error_file_id":"","created_at":1700000000,"expires_at":1700086400,"request_counts":{"total":10,"completed":4,"failed":1}}"#
        )
        let batch = try #require(BatchObject(json: json))
        #expect(batch.status == .inprogress && !batch.status!.isTerminal)
        #expect(batch.inputFileID == "file-a" && batch.outputFileID == nil && batch.errorFileID == nil)
        #expect(batch.completed == 4 && batch.failed == 1 && batch.total == 10)
        #expect(batch.createdAt == Date(timeIntervalSince1970: 1_700_000_000))
        #expect(batch.expiresAt == Date(timeIntervalSince1970: 1_700_086_400))
    }

    @Test func readsAzuresOlderSpellingAndISODates() throws {
        let json = try JSONParser.parse(
            #"{"id":"batch_2","status":"InProgress","created_at":"2024-07-19T17:13:57.2491382+00:00","expires_at":"2024-07-20T17:13:57Z","request_counts":{"total":null,"completed":null,"failed":null}}"#
        )
        let batch = try #require(BatchObject(json: json))
        #expect(batch.status == .inprogress)
        #expect(batch.statusText == "InProgress")
        #expect(batch.expiresAt == ISO8601DateFormatter().date(from: "2024-07-20T17:13:57Z"))
        #expect(batch.completed == nil)
        for (text, status) in [("Completed", BatchObject.Status.completed), ("cancelling", .cancelling), ("Expired", .expired), ("failed", .failed)] {
            #expect(BatchObject(json: try JSONParser.parse(#"{"id":"b","status":"\#(text)"}"#))?.status == status)
        }
    }

    @Test func readsValidationErrorsAndRefusesAnObjectWithoutAnID() throws {
        let json = try JSONParser.parse(
            #"{"id":"batch_3","status":"failed","errors":{"object":"list","data":[{"code":"model_mismatch","message":"The deployment in model of this request doesn't match the rest of the file.","line":7,"param":null}]}}"#
        )
        let batch = try #require(BatchObject(json: json))
        #expect(batch.errors.first?.code == "model_mismatch")
        #expect(batch.errors.first?.line == 7)
        #expect(BatchObject(json: try JSONParser.parse(#"{"status":"completed"}"#)) == nil)
        #expect(BatchObject(json: try JSONParser.parse(#"{"id":"x","created_at":1e300,"status":"completed"}"#))?.createdAt == nil)
    }
}

@Suite struct BatchResultsTests {
    let record: BatchRecord = {
        var record = BatchRecord(number: 4, target: "east", model: "gpt-5-mini", api: .chat, rows: 3, bytes: 10, createdAt: Date())
        record.status = "completed"
        return record
    }()

    func outcome(_ line: String, attempts: Int = 0, maxAttempts: Int = 8) -> Completion? {
        var limits = JobFile.Limits()
        limits.maxAttempts = maxAttempts
        let results = BatchResults(record: record, limits: limits, pooled: true)
        let held = BatchResults.HeldRows(rows: [7: .init(api: .chat, attempts: attempts, outputRetries: 0, check: nil)], checks: [], settings: results.judging)
        return results.outcome(of: Array(line.utf8)[...], held: held, now: Date())
    }

    @Test func anAnsweredLineSucceedsWithItsUsageAndIDs() throws {
        let completion = try #require(
            outcome(#"{"id":"batch_req_abc","custom_id":"r7","response":{"status_code":200,"request_id":"req-1","body":{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}},"error":null}"#)
        )
        #expect(completion.seq == 7 && completion.owner == "batch:4" && completion.target == "east" && completion.batch == 4)
        guard case .succeeded(let response) = completion.outcome else { Issue.record("not a success"); return }
        #expect(response.requestID == "req-1" && response.clientRequestID == "abc")
        #expect(response.promptTokens == 5 && response.completionTokens == 6)
    }

    @Test func aFailedLineIsJudgedAsOnlineAndUnrunLinesAreLeftForTheNextBatch() throws {
        let refused = try #require(outcome(#"{"custom_id":"r7","response":{"status_code":400,"body":{"error":{"code":"content_filter","message":"filtered"}}}}"#))
        guard case .failed(let error, _) = refused.outcome else { Issue.record("a 400 fails the row"); return }
        #expect(error.code == "content_filter")
        let busy = try #require(outcome(#"{"custom_id":"r7","response":{"status_code":500,"body":{"error":{"code":"server_error","message":"x"}}}}"#))
        guard case .retry(_, let retryError, _, true) = busy.outcome else { Issue.record("a 500 goes in a later batch"); return }
        #expect(retryError.code == "server_error")
        let last = try #require(outcome(#"{"custom_id":"r7","response":{"status_code":500,"body":{}}}"#, attempts: 7))
        guard case .failed = last.outcome else { Issue.record("out of attempts"); return }
        #expect(outcome(#"{"custom_id":"r7","response":null,"error":{"code":"batch_expired","message":"not run"}}"#) == nil)
        #expect(outcome(#"{"custom_id":"r8","response":{"status_code":200,"body":{}}}"#) == nil, "not a row of this batch")
        #expect(outcome(#"{"custom_id":"t-1","response":{"status_code":200,"body":{}}}"#) == nil)
        for foreign in ["r+7", "r07", "r7 ", "R7", "r"] {
            #expect(outcome(#"{"custom_id":"\#(foreign)","response":{"status_code":200,"body":{}}}"#) == nil, "\(foreign) is not a custom id we wrote")
        }
        #expect(outcome("not json") == nil)
    }
}
