import Foundation
import FoundryTestSupport
import GRDB
import Testing
@testable import FoundryBatch

@Suite struct SQLiteQueueTests {
    func loaded(_ count: Int) throws -> Fixture {
        let fixture = try Fixture()
        _ = try fixture.load((1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        return fixture
    }

    func response(_ body: String = #"{"ok":true}"#) -> ResponseRecord {
        ResponseRecord(statusCode: 200, requestID: "req", clientRequestID: "cid", body: body, promptTokens: 3, completionTokens: 4, totalTokens: 7, latencyMs: 12)
    }

    @Test func claimsAreExclusiveAndInInputOrder() async throws {
        let fixture = try loaded(10)
        let now = Date()
        let a = try await fixture.queue.claim(owner: "A", limit: 4, leaseUntil: now + 60, now: now)
        let b = try await fixture.queue.claim(owner: "B", limit: 100, leaseUntil: now + 60, now: now)
        #expect(a.map(\.id) == ["r1", "r2", "r3", "r4"])
        #expect(b.count == 6)
        #expect(Set(a.map(\.seq)).isDisjoint(with: b.map(\.seq)))
        #expect(try await fixture.queue.claim(owner: "C", limit: 10, leaseUntil: now + 60, now: now).isEmpty)
        #expect(try await fixture.queue.counts().job.running == 10)
    }

    @Test func completionStoresResultAndStateTogether() async throws {
        let fixture = try loaded(3)
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

    @Test func aLostLeaseCannotOverwriteTheNewOwnersRow() async throws {
        let fixture = try loaded(1)
        let now = Date()
        let first = try await fixture.queue.claim(owner: "dead", limit: 1, leaseUntil: now + 1, now: now)
        #expect(try await fixture.queue.reclaimExpired(now: now + 2) == 1)
        let second = try await fixture.queue.claim(owner: "alive", limit: 1, leaseUntil: now + 60, now: now + 2)
        #expect(second.map(\.seq) == first.map(\.seq))
        #expect(try await fixture.queue.complete([Completion(seq: first[0].seq, owner: "dead", outcome: .succeeded(response("{\"from\":\"dead\"}")))], now: now + 3) == 0)
        #expect(try await fixture.queue.complete([Completion(seq: first[0].seq, owner: "alive", outcome: .succeeded(response()))], now: now + 3) == 1)
    }

    @Test func extendKeepsLeasesAliveAndReleaseReturnsRows() async throws {
        let fixture = try loaded(4)
        let now = Date()
        _ = try await fixture.queue.claim(owner: "A", limit: 4, leaseUntil: now + 5, now: now)
        try await fixture.queue.extendLeases(owner: "A", until: now + 100)
        #expect(try await fixture.queue.reclaimExpired(now: now + 50) == 0)
        try await fixture.queue.release(owner: "A", seqs: [1, 2])
        #expect(try await fixture.queue.counts().job.pending == 2)
        try await fixture.queue.release(owner: "A", seqs: nil)
        #expect(try await fixture.queue.counts().job.pending == 4)
    }

    @Test func requeueByStatusOrCodeKeepsHistory() async throws {
        let fixture = try loaded(3)
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
        let history = try await DatabaseQueue(path: fixture.directory.file("state.sqlite")).read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM attempts")
        }
        #expect(history == 3)
    }

    @Test func aStateFileBelongsToOneJob() throws {
        let fixture = try Fixture()
        #expect(throws: StorageError.self) { try SQLiteQueue(path: fixture.directory.file("state.sqlite"), jobName: "other") }
    }
}
