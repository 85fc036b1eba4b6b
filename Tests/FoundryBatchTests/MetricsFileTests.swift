import Foundation
import FoundryTestSupport
import Logging
import Synchronization
import Testing
@testable import FoundryBatch

/// The metrics file: Prometheus text that node_exporter's textfile collector reads, and the
/// queue's tally of answers behind it.
@Suite struct MetricsFileTests {
    static let families = [
        "foundry_batch_rows", "foundry_batch_requests_total", "foundry_batch_throttled_total", "foundry_batch_tokens_total",
        "foundry_batch_cost_estimated", "foundry_batch_token_requests_total", "foundry_batch_run_duration_seconds",
        "foundry_batch_run_in_progress", "foundry_batch_last_success_timestamp_seconds",
    ]

    func metrics(job: String = "nightly", cost: Double? = 1.25, lastSuccess: Date? = Date(timeIntervalSince1970: 1_790_000_000.5)) -> RunMetrics {
        var counts = QueueCounts()
        (counts.pending, counts.running, counts.succeeded, counts.failed) = (3, 2, 90, 5)
        (counts.promptTokens, counts.completionTokens) = (12_345_678_901, 42)
        let tally = QueueTally(
            answers: [
                .init(target: "sweden", status: 200, count: 60), .init(target: "east\"us\\2\n", status: 429, count: 7),
                .init(target: nil, status: nil, count: 2), .init(target: "sweden", status: 429, count: 3),
            ],
            lastSuccess: lastSuccess
        )
        return RunMetrics(job: job, counts: counts, tally: tally, cost: cost, tokenRequests: 4, duration: 12.75, inProgress: true)
    }

    @Test func everyFamilyHasHelpAndTypeAndTheValuesAreExact() throws {
        let parsed = try PrometheusText(parsing: metrics().prometheusText)
        for family in Self.families {
            #expect(parsed.types[family] != nil && parsed.helps[family] != nil, "\(family)")
            #expect(!parsed.all(family).isEmpty, "\(family)")
        }
        #expect(Set(parsed.samples.map(\.name)) == Set(Self.families))
        #expect(parsed.types["foundry_batch_requests_total"] == "counter" && parsed.types["foundry_batch_rows"] == "gauge")
        #expect(parsed.value("foundry_batch_rows", ["state": "succeeded"]) == 90)
        #expect(parsed.value("foundry_batch_rows", ["state": "running"]) == 2)
        #expect(parsed.value("foundry_batch_requests_total", ["target": "sweden", "status": "200"]) == 60)
        #expect(parsed.value("foundry_batch_requests_total", ["target": "default", "status": "none"]) == 2)
        #expect(parsed.value("foundry_batch_throttled_total") == 10)
        #expect(parsed.value("foundry_batch_tokens_total", ["kind": "prompt"]) == 12_345_678_901)
        #expect(parsed.value("foundry_batch_cost_estimated") == 1.25)
        #expect(parsed.value("foundry_batch_token_requests_total") == 4)
        #expect(parsed.value("foundry_batch_run_duration_seconds") == 12.75)
        #expect(parsed.value("foundry_batch_run_in_progress") == 1)
        #expect(parsed.value("foundry_batch_last_success_timestamp_seconds") == 1_790_000_000.5)
        #expect(parsed.samples.allSatisfy { $0.labels["job"] == "nightly" })
    }

    @Test func labelValuesAreEscapedAndReadBackAsWritten() throws {
        let job = "night \"one\" \\ two\nthree"
        let text = metrics(job: job).prometheusText
        #expect(text.split(separator: "\n").allSatisfy { !$0.isEmpty }, "a line feed in a name never breaks a line")
        let parsed = try PrometheusText(parsing: text)
        #expect(parsed.samples.allSatisfy { $0.labels["job"] == job })
        #expect(parsed.value("foundry_batch_requests_total", ["target": "east\"us\\2\n"]) == 7)
    }

    @Test func withoutPricesOrASuccessThoseFamiliesAreLeftOut() throws {
        let parsed = try PrometheusText(parsing: metrics(cost: nil, lastSuccess: nil).prometheusText)
        #expect(parsed.all("foundry_batch_cost_estimated").isEmpty && parsed.types["foundry_batch_cost_estimated"] == nil)
        #expect(parsed.all("foundry_batch_last_success_timestamp_seconds").isEmpty)
    }

    @Test func theReaderRefusesWhatACollectorWouldRefuse() {
        for bad in [
            "foundry_batch_rows{job=\"a\"} 1",  // no line feed at the end
            "foundry batch 1\n", "x{job=a} 1\n", "x{job=\"a} 1\n", "x{job=\"a\\q\"} 1\n", "x 1\ny 2\nx 3\n", "x 1\nx 2\n",
            "x one\n", "x 1\n# TYPE x counter\n", "# TYPE x counters\nx 1\n",
        ] {
            #expect(throws: PrometheusText.Problem.self, "\(bad)") { try PrometheusText(parsing: bad) }
        }
    }

    @Test(arguments: QueueKind.allCases) func bothQueuesTallyEveryAnsweredTryByTargetAndStatus(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(queue: kind)
        _ = try await fixture.load((1...4).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        let queue = fixture.queue
        let now = Date(timeIntervalSince1970: 1_790_000_000)
        #expect(try await queue.tally() == QueueTally())
        let rows = try await queue.claim(owner: "A", limit: 4, leaseUntil: now + 60, now: now)
        let ok = ResponseRecord(statusCode: 200, requestID: "q", clientRequestID: "c", body: "{}", promptTokens: 1, completionTokens: 1, totalTokens: 2, latencyMs: 5)
        func completion(_ row: Int, _ target: String?, _ outcome: RowOutcome) -> Completion {
            var completion = Completion(seq: rows[row].seq, owner: "A", outcome: outcome)
            completion.target = target
            return completion
        }
        try await queue.complete(
            [
                completion(0, "a", .succeeded(ok)),
                completion(1, "a", .retry(at: now, error: RowError(code: "rate_limited", message: "429", statusCode: 429), response: nil, countsAsAttempt: false)),
                completion(2, "b", .failed(error: RowError(code: "bad_request", message: "no", statusCode: 400), response: nil)),
                completion(3, nil, .retry(at: now, error: RowError(code: "timeout", message: "no answer", statusCode: nil), response: nil)),
            ],
            now: now
        )
        let again = try await queue.claim(owner: "A", limit: 4, leaseUntil: now + 60, now: now + 1)
        #expect(again.map(\.id) == ["r2", "r4"])
        var second = Completion(seq: again[0].seq, owner: "A", outcome: .succeeded(ok))
        second.target = "b"
        try await queue.complete([second], now: now + 2)
        let tally = try await queue.tally()
        #expect(
            tally.answers == [
                .init(target: nil, status: nil, count: 1), .init(target: "a", status: 200, count: 1), .init(target: "a", status: 429, count: 1),
                .init(target: "b", status: 200, count: 1), .init(target: "b", status: 400, count: 1),
            ]
        )
        #expect(tally.lastSuccess == now + 2)
    }

    @Test(.timeLimit(.minutes(1))) func theWriterReplacesTheFileWholeAndMarksTheEnd() async throws {
        let folder = TemporaryDirectory()
        let path = folder.path + "/metrics/job.prom"
        try FileManager.default.createDirectory(atPath: folder.path + "/metrics", withIntermediateDirectories: true)
        let writes = Counter()
        let writer = MetricsFile(path: path, interval: .milliseconds(20), logger: Logger(label: "test")) { inProgress in
            writes.increment()
            var metrics = self.metrics()
            metrics.inProgress = inProgress
            metrics.tokenRequests = writes.value
            return metrics
        }
        await writer.start()
        #expect(try PrometheusText(parsing: String(contentsOfFile: path, encoding: .utf8)).value("foundry_batch_run_in_progress") == 1)
        while writes.value < 4 { try await Task.sleep(for: .milliseconds(10)) }
        await writer.finish()
        let last = try PrometheusText(parsing: String(contentsOfFile: path, encoding: .utf8))
        #expect(last.value("foundry_batch_run_in_progress") == 0)
        #expect(last.value("foundry_batch_token_requests_total") == Double(writes.value), "the last write is the one on disk")
        let left = try FileManager.default.contentsOfDirectory(atPath: folder.path + "/metrics")
        #expect(left == ["job.prom"], "no temporary file stays beside it")
    }
}

/// A count shared with a `@Sendable` closure.
final class Counter: Sendable {
    let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
