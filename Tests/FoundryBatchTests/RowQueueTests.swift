import Foundation
import FoundryTestSupport
import GRDB
import Testing
@testable import FoundryBatch

/// The queue contract, run against every implementation: what the runner, `retry`,
/// `status` and `export` rely on, whichever store holds the rows.
@Suite struct RowQueueTests {
    func loaded(_ count: Int, _ kind: QueueKind) async throws -> Fixture {
        let fixture = try await Fixture(queue: kind)
        _ = try await fixture.load((1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        return fixture
    }

    func response(_ body: String = #"{"ok":true}"#) -> ResponseRecord {
        ResponseRecord(statusCode: 200, requestID: "req", clientRequestID: "cid", body: body, promptTokens: 3, completionTokens: 4, totalTokens: 7, latencyMs: 12)
    }

    @Test(arguments: QueueKind.allCases) func claimsAreExclusiveAndInInputOrder(_ kind: QueueKind) async throws {
        let fixture = try await loaded(10, kind)
        let now = Date()
        let a = try await fixture.queue.claim(owner: "A", limit: 4, leaseUntil: now + 60, now: now)
        let b = try await fixture.queue.claim(owner: "B", limit: 100, leaseUntil: now + 60, now: now)
        #expect(a.map(\.id) == ["r1", "r2", "r3", "r4"])
        #expect(b.count == 6)
        #expect(Set(a.map(\.seq)).isDisjoint(with: b.map(\.seq)))
        #expect(try await fixture.queue.claim(owner: "C", limit: 10, leaseUntil: now + 60, now: now).isEmpty)
        #expect(try await fixture.queue.counts().job.running == 10)
    }

    @Test(arguments: QueueKind.allCases) func completionStoresResultAndStateTogether(_ kind: QueueKind) async throws {
        let fixture = try await loaded(3, kind)
        let now = Date()
        let rows = try await fixture.queue.claim(owner: "A", limit: 3, leaseUntil: now + 60, now: now)
        let applied = try await fixture.queue.complete(
            [
                Completion(seq: rows[0].seq, owner: "A", outcome: .succeeded(response())),
                Completion(seq: rows[1].seq, owner: "A", outcome: .failed(error: RowError(code: "content_filter", message: "filtered", statusCode: 400), response: nil)),
                Completion(seq: rows[2].seq, owner: "A", outcome: .retry(at: now + 30, error: RowError(code: "server_error", message: "busy", statusCode: 503), response: nil)),
            ],
            now: now
        )
        #expect(applied == 3)
        let counts = try await fixture.queue.counts().job
        #expect(counts.succeeded == 1 && counts.failed == 1 && counts.pending == 1)
        #expect(counts.promptTokens == 3 && counts.completionTokens == 4)
        #expect(try await fixture.queue.claim(owner: "A", limit: 3, leaseUntil: now + 60, now: now).isEmpty, "the retry is not due yet")
        let later = try await fixture.queue.claim(owner: "A", limit: 3, leaseUntil: now + 120, now: now + 31)
        #expect(later.map(\.id) == ["r3"])
        #expect(later[0].attempts == 1)
        // A 429 paces the job; it does not use up the row's attempts.
        try await fixture.queue.complete(
            [Completion(seq: later[0].seq, owner: "A", outcome: .retry(at: now + 40, error: RowError(code: "rate_limited", message: "429", statusCode: 429), response: nil, countsAsAttempt: false))],
            now: now + 31
        )
        #expect(try await fixture.queue.claim(owner: "A", limit: 3, leaseUntil: now + 120, now: now + 41).first?.attempts == 1)
        #expect(try await fixture.queue.activity().nextDue == nil)
        #expect(try await fixture.queue.activity().running == 1)
    }

    @Test(arguments: QueueKind.allCases) func aLostLeaseCannotOverwriteTheNewOwnersRow(_ kind: QueueKind) async throws {
        let fixture = try await loaded(1, kind)
        let now = Date()
        let first = try await fixture.queue.claim(owner: "dead", limit: 1, leaseUntil: now + 1, now: now)
        #expect(try await fixture.queue.reclaimExpired(now: now + 2) == 1)
        let second = try await fixture.queue.claim(owner: "alive", limit: 1, leaseUntil: now + 60, now: now + 2)
        #expect(second.map(\.seq) == first.map(\.seq))
        #expect(try await fixture.queue.complete([Completion(seq: first[0].seq, owner: "dead", outcome: .succeeded(response("{\"from\":\"dead\"}")))], now: now + 3) == 0)
        #expect(try await fixture.queue.complete([Completion(seq: first[0].seq, owner: "alive", outcome: .succeeded(response()))], now: now + 3) == 1)
    }

    @Test(arguments: QueueKind.allCases) func extendKeepsLeasesAliveAndReleaseReturnsRows(_ kind: QueueKind) async throws {
        let fixture = try await loaded(4, kind)
        let now = Date()
        _ = try await fixture.queue.claim(owner: "A", limit: 4, leaseUntil: now + 5, now: now)
        try await fixture.queue.extendLeases(owner: "A", until: now + 100)
        #expect(try await fixture.queue.reclaimExpired(now: now + 50) == 0)
        try await fixture.queue.release(owner: "A", seqs: [1, 2])
        #expect(try await fixture.queue.counts().job.pending == 2)
        try await fixture.queue.release(owner: "A", seqs: nil)
        #expect(try await fixture.queue.counts().job.pending == 4)
    }

    @Test(arguments: QueueKind.allCases) func requeueByStatusOrCodeKeepsHistory(_ kind: QueueKind) async throws {
        let fixture = try await loaded(3, kind)
        let now = Date()
        let rows = try await fixture.queue.claim(owner: "A", limit: 3, leaseUntil: now + 60, now: now)
        try await fixture.queue.complete(
            [
                Completion(seq: rows[0].seq, owner: "A", outcome: .failed(error: RowError(code: "content_filter", message: "f", statusCode: 400), response: nil)),
                Completion(seq: rows[1].seq, owner: "A", outcome: .failed(error: RowError(code: "timeout", message: "t"), response: nil)),
                Completion(seq: rows[2].seq, owner: "A", outcome: .failed(error: RowError(code: "server_error", message: "s", statusCode: 500), response: nil)),
            ],
            now: now
        )
        #expect(try await fixture.queue.requeueFailed(RequeueFilter(statusCodes: [500])) == 1)
        #expect(try await fixture.queue.requeueFailed(RequeueFilter(errorCodes: ["timeout"])) == 1)
        #expect(try await fixture.queue.counts().job.failed == 1)
        #expect(try await fixture.queue.requeueFailed(RequeueFilter()) == 1)
        if kind == .sqlite {
            let history = try await DatabaseQueue(path: fixture.directory.file("state.sqlite")).read { db in
                try Int.fetchOne(db, sql: "SELECT count(*) FROM attempts")
            }
            #expect(history == 3)
        }
        let requeued = try await fixture.queue.claim(owner: "B", limit: 3, leaseUntil: now + 60, now: now)
        #expect(requeued.count == 3 && requeued.allSatisfy { $0.attempts == 0 }, "a requeued row starts its attempts again")
    }

    @Test(arguments: QueueKind.allCases) func aLoadIsAllOrNothingAndTellsEachRowsFate(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(queue: kind)
        func row(_ id: String, hash: String = "h", source: String = "in.jsonl:1") -> NewRow {
            NewRow(
                id: id, variant: "", source: source, api: .chat, deployment: "d", body: "{}", metadata: nil, estimatedTokens: 10,
                estimatedPromptTokens: 4, contentHash: hash
            )
        }
        struct Broken: Error {}
        await #expect(throws: Broken.self) {
            try await fixture.queue.withLoad(source: "bad") { load in
                #expect(try load.add(row("x")) == .inserted)
                throw Broken()
            }
        }
        #expect(try await fixture.queue.counts().job.total == 0, "a failed load keeps nothing")
        let fates = try await fixture.queue.withLoad(source: "first") { load in
            [try load.add(row("a")), try load.add(row("b")), try load.add(row("a", source: "in.jsonl:3"))]
        }
        #expect(fates == [.inserted, .inserted, .duplicate(firstSource: "in.jsonl:1")])
        let again = try await fixture.queue.withLoad(source: "second") { load in
            [try load.add(row("a")), try load.add(row("b", hash: "changed", source: "new.jsonl:2"))]
        }
        #expect(again == [.unchanged, .conflict(source: "in.jsonl:1")])
        #expect(try await fixture.queue.counts().job.pending == 2)
        let claimed = try await fixture.queue.claim(owner: "A", limit: 10, leaseUntil: Date() + 60, now: Date())
        #expect(claimed.map(\.id) == ["a", "b"] && claimed.allSatisfy { $0.estimatedTokens == 10 && $0.api == .chat })
    }

    @Test(arguments: QueueKind.allCases) func reportAndExportReadWhatWasCommitted(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(yaml: "request:\n  max_tokens: 50\nvariants:\n  - name: A\n  - name: B", queue: kind)
        _ = try await fixture.load((1...3).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        let now = Date()
        let rows = try await fixture.queue.claim(owner: "A", limit: 6, leaseUntil: now + 60, now: now)
        #expect(rows.count == 6)
        func answered(_ latency: Double) -> ResponseRecord {
            ResponseRecord(statusCode: 200, requestID: "req", clientRequestID: "c\(latency)", body: "{}", promptTokens: 2, completionTokens: 5, latencyMs: latency)
        }
        let throttle = RowError(code: "rate_limited", message: "slow down", statusCode: 429)
        try await fixture.queue.complete(
            [
                Completion(seq: rows[0].seq, owner: "A", outcome: .succeeded(answered(10))),
                Completion(seq: rows[1].seq, owner: "A", outcome: .succeeded(answered(30))),
                Completion(seq: rows[2].seq, owner: "A", outcome: .succeeded(answered(20))),
                Completion(seq: rows[3].seq, owner: "A", outcome: .failed(error: RowError(code: "content_filter", message: "no", statusCode: 400), response: nil)),
                Completion(seq: rows[4].seq, owner: "A", outcome: .failed(error: RowError(code: "content_filter", message: "also", statusCode: 400), response: nil)),
                Completion(seq: rows[5].seq, owner: "A", outcome: .retry(at: now + 5, error: throttle, response: nil, countsAsAttempt: false)),
            ],
            now: now
        )
        let report = try await fixture.queue.report()
        #expect(report.job.counts.succeeded == 3 && report.job.counts.failed == 2 && report.job.counts.pending == 1)
        #expect(report.job.counts.promptTokens == 6 && report.job.counts.completionTokens == 15)
        #expect(report.job.latencyP50 == 20 && report.job.latencyP95 == 30)
        #expect(report.job.attempts == 5)
        #expect(report.variants.map(\.counts.variant) == ["A", "B"])
        #expect(report.variants.map(\.counts.total) == [3, 3])
        #expect(report.throttled == 1)
        #expect(report.errors.map(\.code) == ["content_filter"] && report.errors.first?.count == 2)
        #expect(report.errors.first?.exampleMessage == "no", "the example row's own message, not the least message of the code")
        #expect(report.pendingRows == 1 && report.pendingPromptTokens > 0 && report.pendingCompletionCap == 50)
        var finished: [(Int64, RowState)] = []
        try await fixture.queue.forEachFinished { finished.append(($0.seq, $0.state)) }
        #expect(finished.map(\.0) == rows.prefix(5).map(\.seq), "finished rows in input order")
        #expect(finished.map(\.1) == [.succeeded, .succeeded, .succeeded, .failed, .failed])
        #expect(try await fixture.queue.leaseOwners().isEmpty)
        #expect(try await fixture.queue.activity().nextDue.map { abs($0.timeIntervalSince(now + 5)) < 0.01 } == true)
    }

    @Test func aRowThisVersionCannotReadIsAStorageError() async throws {
        let fixture = try await loaded(1, .sqlite)
        try await fixture.pool.write { db in try db.execute(sql: "UPDATE rows SET api = 'telepathy'") }
        await #expect(throws: StorageError.self) {
            _ = try await fixture.queue.claim(owner: "A", limit: 1, leaseUntil: Date() + 60, now: Date())
        }
    }

    @Test func aStateFileBelongsToOneJob() async throws {
        let fixture = try await Fixture()
        #expect(throws: StorageError.self) { try SQLiteQueue(path: fixture.directory.file("state.sqlite"), jobName: "other") }
    }
}
