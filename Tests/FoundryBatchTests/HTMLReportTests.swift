import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// The report's figures from each queue, and the page drawn from them: well formed,
/// escaped, and holding what `status` holds.
@Suite struct HTMLReportTests {
    static let sweep = """
        variants:
          - { name: a, deployment: gpt-5-mini }
          - { name: b, deployment: gpt-4.1 }
        prices: {prompt_per_1k: 0.001, completion_per_1k: 0.002}
        """

    static func chat(_ text: String) -> String {
        #"{"choices":[{"index":0,"message":{"role":"assistant","content":"# + JSONValue.string(text).jsonText + #"},"finish_reason":"stop"}]}"#
    }

    static func answer(_ body: String, latency: Double = 100, finish: String? = nil) -> ResponseRecord {
        ResponseRecord(
            statusCode: 200, requestID: "req", clientRequestID: "cid", body: body, promptTokens: 5, completionTokens: 3, totalTokens: 8,
            latencyMs: latency, finish: finish
        )
    }

    /// Four questions for two variants; `b` fails r2, says "no" to r3 and `<script>` to r4.
    func answeredSweep(_ kind: QueueKind) async throws -> Fixture {
        let fixture = try await Fixture(yaml: Self.sweep, queue: kind)
        _ = try await fixture.load((1...4).map { "{\"id\": \"r\($0)\", \"prompt\": \"question \($0)?\"}" }.joined(separator: "\n"))
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let rows = try await fixture.queue.claim(owner: "A", limit: 100, leaseUntil: start + 600, now: start)
        for (index, row) in rows.enumerated() {
            let outcome: RowOutcome =
                switch (row.variant, row.id) {
                case ("b", "r2"): .failed(error: RowError(code: "server_error", message: "busy <b>", statusCode: 500), response: nil)
                case ("b", "r3"): .succeeded(Self.answer(Self.chat("no"), latency: 300))
                case ("b", "r4"): .succeeded(Self.answer(Self.chat("<script>alert('x')</script>"), latency: 900, finish: "length"))
                default: .succeeded(Self.answer(Self.chat("yes"), latency: Double(100 + index * 10)))
                }
            // One row ending every 10 s: the throughput chart has something to spread.
            _ = try await fixture.queue.complete([Completion(seq: row.seq, owner: "A", outcome: outcome)], now: start + Double(index * 10))
        }
        return fixture
    }

    @Test(arguments: QueueKind.allCases) func detailsBinRowsAndPutDisagreementsFirst(_ kind: QueueKind) async throws {
        let fixture = try await answeredSweep(kind)
        let details = try await fixture.queue.details(bins: 10, comparisons: 200, textLimit: 600)
        #expect(details.comparisons.map(\.id) == ["r2", "r3", "r4", "r1"], "the three that differ, then the one that agrees")
        #expect(details.comparisons.map(\.disagree) == [true, true, true, false])
        let r4 = try #require(details.comparisons.first { $0.id == "r4" })
        #expect(r4.prompt == "question 4?")
        #expect(r4.answers.map(\.variant) == ["a", "b"], "the job's variant order")
        #expect(r4.answers.map(\.text) == ["yes", "<script>alert('x')</script>"])
        #expect(r4.answers[1].finish == "length")
        #expect(r4.answers[1].latencyMs == 900)
        #expect(details.comparisons[0].answers[1].text == "error: server_error")
        #expect(details.comparisons[0].answers[1].state == .failed)

        #expect(details.binSeconds == 7, "70 s over 10 bins")
        #expect(details.throughput.count == 10)
        #expect(details.throughput.reduce(0) { $0 + $1.succeeded } == 7)
        #expect(details.throughput.reduce(0) { $0 + $1.failed } == 1)
        #expect(details.lastFinished?.timeIntervalSince(try #require(details.firstFinished)) == 70)
        #expect(details.latency.reduce(0) { $0 + $1.count } == 7, "every succeeded row is in one latency bin")
        #expect(!details.latencyOfBatches)
        #expect(details.latency.count == 5, "bins / 2 bins up to the p99; none above it here")

        let cut = try await fixture.queue.details(bins: 10, comparisons: 2, textLimit: 3)
        #expect(cut.comparisons.map(\.id) == ["r2", "r3"])
        #expect(cut.comparisons[0].prompt == "que…")
    }

    @Test(arguments: QueueKind.allCases) func bothQueuesReadResponsesRefusalsAndToolCallsAlike(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(yaml: "api: responses\n" + Self.sweep, queue: kind)
        _ = try await fixture.load((1...3).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        let rows = try await fixture.queue.claim(owner: "A", limit: 100, leaseUntil: Date() + 600, now: Date())
        let text = #"{"output":[{"type":"reasoning","summary":[]},{"type":"message","content":[{"type":"output_text","text":"hi <b>"}]}]}"#
        let refusal = #"{"output":[{"type":"message","content":[{"type":"refusal","refusal":"I cannot"}]}]}"#
        let call = #"{"output":[{"type":"function_call","name":"f","arguments":"{}"}]}"#
        let bodies = ["r1": text, "r2": refusal, "r3": call]
        _ = try await fixture.queue.complete(
            rows.map { Completion(seq: $0.seq, owner: "A", outcome: .succeeded(Self.answer(bodies[$0.id]!))) }, now: Date()
        )
        let details = try await fixture.queue.details(bins: 4, comparisons: 10, textLimit: 600)
        let shown = Dictionary(uniqueKeysWithValues: details.comparisons.map { ($0.id, $0.answers.map(\.text)) })
        #expect(shown["r1"] == ["hi <b>", "hi <b>"])
        #expect(shown["r2"] == ["refused: I cannot", "refused: I cannot"])
        #expect(shown["r3"] == [call, call], "no text: the answer as it came")
        #expect(details.comparisons.allSatisfy { !$0.disagree })
        #expect(details.comparisons.map(\.prompt) == ["p1", "p2", "p3"])
    }

    @Test func batchRowsChartTheirTurnaround() async throws {
        let fixture = try await Fixture(yaml: "engine: batch")
        _ = try await fixture.load(#"{"id": "r1", "prompt": "p"}"#)
        let rows = try await fixture.queue.claim(owner: "A", limit: 10, leaseUntil: Date() + 600, now: Date())
        _ = try await fixture.queue.complete(
            [Completion(seq: rows[0].seq, owner: "A", outcome: .succeeded(Self.answer(Self.chat("ok"), latency: 3_600_000)), batch: 1)], now: Date()
        )
        let details = try await fixture.queue.details(bins: 10, comparisons: 10, textLimit: 10)
        #expect(details.latencyOfBatches)
        #expect(details.comparisons.isEmpty, "no sweep, no side-by-side table")
        let page = HTMLReport(
            status: try await fixture.session().status(), details: details, variants: [], engine: .batch, generatedAt: Date()
        ).html
        #expect(page.contains("Batch turnaround"))
        #expect(!page.contains("id=\"answers\""))
    }

    func page(_ fixture: Fixture, now: Date = Date()) async throws -> (html: String, tree: MarkupTree, status: StatusReport) {
        let details = try await fixture.queue.details(bins: 60, comparisons: HTMLReport.comparedRows, textLimit: HTMLReport.textLimit)
        let status = try await fixture.session().status()
        #expect(details.report == status.report, "the page's figures are status's")
        let html = HTMLReport(status: status, details: details, variants: fixture.job.variants.map(\.name), engine: .online, generatedAt: now).html
        return (html, try MarkupTree(parsing: html), status)
    }

    @Test func thePageIsWellFormedEscapedAndHoldsStatusFigures() async throws {
        let fixture = try await answeredSweep(.sqlite)
        let (html, tree, status) = try await page(fixture)
        #expect(tree.root.all("script").count == 1, "the filter script, and no script from an answer")
        #expect(html.contains("&lt;script&gt;alert('x')&lt;/script&gt;"))
        #expect(html.components(separatedBy: "<script").count == 2, "one script tag in the file")
        #expect(!html.contains("src=") && !html.contains("href="), "nothing to fetch")

        let variants = try #require(tree.root.byID("variants"))
        let rows = variants.all("tr").dropFirst().map { $0.elements.map(\.text) }
        #expect(rows.map(\.first) == ["a", "b"])
        for (cells, figures) in zip(rows, status.report.variants) {
            let c = figures.counts
            #expect(Array(cells[1...4]) == ["\(c.total)", "\(c.succeeded)", "\(c.failed)", "\(c.pending + c.running)"])
            #expect(Array(cells[7...9]) == ["\(c.promptTokens)", "\(c.completionTokens)", "\(c.truncated)"])
            #expect(cells[10] == String(format: "%.4f", status.prices!.cost(c)))
        }
        #expect(rows[1][5] == "300 ms", "b's median of 100, 300 and 900")

        let answers = try #require(tree.root.byID("answers"))
        let lines = answers.all("tr").dropFirst()
        #expect(lines.map { $0.hasClass("disagree") } == [true, true, true, false])
        #expect(lines.map { $0.elements[0].text } == ["r2 differs", "r3 differs", "r4 differs", "r1"])
        #expect(lines.first { $0.elements[0].text.hasPrefix("r4") }?.elements[3].text.hasPrefix("<script>alert('x')</script>") == true)

        let errors = try #require(tree.root.byID("errors"))
        #expect(errors.all("td").map(\.text) == ["server_error", "1", "r2", "busy <b>"])
        let charts = try #require(tree.root.byID("charts"))
        #expect(charts.all("svg").count == 2)
        let tiles = try #require(tree.root.byID("totals")).all("div").map { $0.elements.map(\.text) }
        #expect(tiles.contains(["rows", "8"]) && tiles.contains(["failed", "1"]) && tiles.contains(["succeeded", "7"]))
    }

    @Test func aJobStillRunningSaysSo() async throws {
        let fixture = try await Fixture(yaml: Self.sweep)
        _ = try await fixture.load(#"{"id": "r1", "prompt": "p"}"#)
        _ = try await fixture.queue.claim(owner: "A", limit: 1, leaseUntil: Date() + 600, now: Date())
        let (html, tree, _) = try await page(fixture)
        #expect(html.contains("In progress: 1 rows pending and 1 running"))
        #expect(tree.root.byID("charts")?.text.contains("No row has ended yet.") == true)
        let line = try #require(tree.root.byID("answers")?.all("tr").dropFirst().first)
        #expect(!line.hasClass("disagree"), "nothing to compare yet")
    }

    @Test func escapingLeavesNoMarkupAndNoControlCharacters() throws {
        #expect(HTML.escape("<a href=\"x\">&'</a>") == "&lt;a href=\"x\"&gt;&amp;'&lt;/a&gt;", "quotes cost nothing in element content")
        #expect(HTML.escape("a\u{0}b\u{1B}c\td\u{FFFF}") == "a\u{FFFD}b\u{FFFD}c\td\u{FFFD}")
        let tree = try MarkupTree(parsing: "<p>" + HTML.escape("x\u{7}<y>&z;\u{1}") + "</p>")
        #expect(tree.root.text == "x\u{FFFD}<y>&z;\u{FFFD}")
        #expect(HTML.count(1_234_567) == "1,234,567" && HTML.count(-1000) == "-1,000" && HTML.count(12) == "12")
    }

    /// Odd answers a service may send, stored as they came: the page is written all the same.
    @Test(arguments: QueueKind.allCases) func oddAnswerShapesNeverFailThePage(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(yaml: "api: responses\n" + Self.sweep, queue: kind)
        let bodies = [
            #"{"output":["hello"]}"#, #"{"output":"abc"}"#, #"{"output":[{"content":["x"]}]}"#, #"{"output":[{"content":"str"}]}"#,
            #"{"output":{"content":[{"type":"output_text","text":"t"}]}}"#,
        ]
        _ = try await fixture.load((1...bodies.count).map { "{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}" }.joined(separator: "\n"))
        let rows = try await fixture.queue.claim(owner: "A", limit: 100, leaseUntil: Date() + 600, now: Date())
        _ = try await fixture.queue.complete(
            rows.map { row in Completion(seq: row.seq, owner: "A", outcome: .succeeded(Self.answer(bodies[Int(row.id.dropFirst())! - 1]))) }, now: Date()
        )
        let details = try await fixture.queue.details(bins: 10, comparisons: 20, textLimit: 600)
        let shown = Dictionary(uniqueKeysWithValues: details.comparisons.map { ($0.id, $0.answers[0].text) })
        for (index, body) in bodies.enumerated() { #expect(shown["r\(index + 1)"] == body, "no text: the body as it came (\(body))") }
    }

    @Test func aSecretAServiceEchoedNeverReachesThePage() async throws {
        let fixture = try await answeredSweep(.memory)
        let rows = try await fixture.queue.claim(owner: "A", limit: 1, leaseUntil: Date() + 600, now: Date())
        #expect(rows.isEmpty)
        let details = try await fixture.queue.details(bins: 10, comparisons: 10, textLimit: 600)
        var page = HTMLReport(
            status: StatusReport(job: "sweep", report: details.report, prices: nil), details: details, variants: ["a", "b"], engine: .online, generatedAt: Date()
        )
        page.secrets = ["question 4?", "busy <b>", "short"]
        let html = page.html
        #expect(!html.contains("question 4?") && !html.contains("busy &lt;b&gt;") && html.contains("[redacted]"))
        _ = try MarkupTree(parsing: html)
    }

    @Test func slowJobsChartRowsPerHourOrDay() throws {
        var details = ReportDetails(report: QueueReport.empty)
        details.binSeconds = 4000
        details.throughput = (0..<20).map { ReportDetails.TimeBin(start: Date(timeIntervalSince1970: Double($0) * 4000), succeeded: ($0 % 2) * 2, failed: 0) }
        let html = HTMLReport(status: StatusReport(job: "j", report: .empty, prices: nil), details: details, variants: [], engine: .online, generatedAt: Date()).html
        #expect(html.contains("Rows ended per hour"))
        #expect(SVGBarChart.number(0.9) == "0.9" && SVGBarChart.number(0.0034) == "0.0034" && SVGBarChart.number(1234) == "1,234")
        #expect(HTML.latency(-1e20) == "-100000000000000000000 ms" && HTML.latency(.infinity) == "–")
        #expect(ProgressReporter.duration(1e300) == ProgressReporter.duration(1e15))
    }
}

extension QueueReport {
    /// A job with no rows.
    static let empty = QueueReport(
        job: .init(counts: QueueCounts(), latencyP50: nil, latencyP95: nil, attempts: 0), variants: [], throttled: 0, errors: [],
        pendingPromptTokens: 0, pendingCompletionCap: 0, pendingRows: 0
    )
}
