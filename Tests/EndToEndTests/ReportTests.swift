import Foundation
import FoundryTestSupport
import Testing

/// `foundry-batch report` through the built binary: the page of a sweep holds each
/// variant's figures as `status --json` gives them and their answers side by side, escapes
/// answers that hold HTML, parses strictly, and a real browser shows it.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ReportTests {
    /// Two variants that differ only in their answers' token cap: long answers are cut in
    /// `short` (they differ), short ones are whole in both (they agree).
    static let job = """
        name: sweep
        input: in.jsonl
        output: out/sweep.jsonl
        endpoint: emulator
        api: chat
        limits: {concurrency: 4}
        prices: {prompt_per_1k: 0.001, completion_per_1k: 0.002}
        variants:
          - { name: full, deployment: gpt-5-mini, request: { max_tokens: 64 } }
          - { name: short, deployment: gpt-4.1, request: { max_tokens: 8 } }
        """

    static let prompts = [
        "2+2?", "Blue?", "<script>alert('x')</script> and more words", "BLOCKME please",
        "What is the largest ocean on Earth, and how deep is it?", "Hi",
    ]

    func answeredSweep() async throws -> CLI {
        let cli = CLI()
        cli.write("job.yaml", Self.job)
        cli.write("in.jsonl", Self.prompts.enumerated().map { "{\"id\": \"q\($0.offset + 1)\", \"prompt\": \(Self.quoted($0.element))}" }.joined(separator: "\n") + "\n")
        return cli
    }

    static func quoted(_ text: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: [text]), as: UTF8.self).dropFirst().dropLast().description
    }

    @Test func theReportOfASweepHoldsStatusFiguresAndAnswersSideBySide() async throws {
        let cli = try await answeredSweep()
        let early = try await cli.run("load", "job.yaml")
        #expect(early.status == 0, "\(early.stderr)")
        let before = try await cli.run("report", "job.yaml", "--output", "before.html")
        #expect(before.status == 0, "\(before.stderr)")
        #expect(cli.read("before.html").contains("In progress: 12 rows pending"), "a job not yet run reports what it has")

        let run = try await cli.run("run", "job.yaml", "--no-progress")
        #expect(run.status == 1, "the BLOCKME row is refused in both variants: \(run.stderr)")
        let report = try await cli.run("report", "job.yaml")
        #expect(report.status == 0, "\(report.stderr)")
        #expect(report.stdout.contains("report of 12 rows, 6 rows side by side -> \(cli.path("out/sweep.report.html"))"), "\(report.stdout)")
        let html = cli.read("out/sweep.report.html")
        let tree = try MarkupTree(parsing: html)
        let status = try await cli.run("status", "job.yaml", "--json").json

        let rows = try #require(tree.root.byID("variants")).all("tr").dropFirst().map { $0.elements.map(\.text) }
        let variants = try #require(status["variants"] as? [[String: Any]])
        #expect(rows.map(\.first) == ["full", "short"])
        for (cells, figures) in zip(rows, variants) {
            let numbers = ["total", "succeeded", "failed"].map { "\(figures[$0] as? Int ?? -1)" }
            #expect(Array(cells[1...3]) == numbers, "\(cells[0])")
            #expect(Array(cells[7...9]) == ["prompt_tokens", "completion_tokens", "truncated"].map { "\(figures[$0] as? Int ?? -1)" })
            #expect(cells[10] == String(format: "%.4f", figures["estimated_cost"] as? Double ?? -1))
        }
        #expect(variants.last?["truncated"] as? Int ?? 0 > 0, "the short variant cut answers")

        let answers = try #require(tree.root.byID("answers")).all("tr").dropFirst()
        let differs = answers.map { $0.hasClass("disagree") }
        #expect(differs == [true, true, false, false, false, false], "the cut answers first: \(answers.map { $0.elements[0].text })")
        #expect(answers.map { $0.elements[0].text.split(separator: " ")[0] } == ["q3", "q5", "q1", "q2", "q4", "q6"])
        let script = try #require(answers.first { $0.elements[0].text.hasPrefix("q3") })
        #expect(script.elements[2].text.contains("to: <script>alert('x')</script> and more"), "the answer, as text")
        #expect(tree.root.all("script").count == 1, "no answer became markup")
        #expect(answers.first { $0.elements[0].text.hasPrefix("q4") }?.elements[2].text.hasPrefix("error: content_filter") == true)
        #expect(try #require(tree.root.byID("errors")).all("td").first?.text == "content_filter")
        #expect(html.utf8.count < 64 * 1024)
    }

    @Test(.enabled(if: Chromium.path != nil || Chromium.required, "chromium is not installed here; .ci/run installs it"))
    func aHeadlessBrowserShowsTheVariantsAndTotals() async throws {
        let cli = try await answeredSweep()
        #expect(try await cli.run("run", "job.yaml", "--no-progress").status == 1)
        #expect(try await cli.run("report", "job.yaml").status == 0)
        let dom = try await Chromium.dumpDOM(of: cli.path("out/sweep.report.html"))
        let shown = try MarkupTree(parsing: Chromium.xmlSafe(dom)).root.text
        for text in ["Variants", "full", "short", "Answers side by side", "differs", "Most frequent errors", "estimated cost"] {
            #expect(shown.contains(text), "the browser shows \(text)")
        }
        #expect(dom.contains("<dd>12</dd>"), "the rows tile")
        #expect(!dom.contains("<script>alert"), "the browser made no element of an answer")
    }

    @Test func aReportNeverReplacesTheJobsFiles() async throws {
        let cli = try await answeredSweep()
        let clash = try await cli.run("report", "job.yaml", "--output", "out/sweep.jsonl")
        #expect(clash.status == 2)
        #expect(clash.stderr.contains("the report would replace output"), "\(clash.stderr)")
        let input = try await cli.run("report", "job.yaml", "--output", "in.jsonl")
        #expect(input.status == 2 && input.stderr.contains("input"))
        #expect(cli.read("in.jsonl").contains("2+2?"))
        for (path, role) in [(".foundry-batch/sweep.sqlite-wal", "the state"), ("out/sweep.rejects.jsonl", "the rejects file")] {
            let refused = try await cli.run("report", "job.yaml", "--output", path)
            #expect(refused.status == 2 && refused.stderr.contains("the report would replace \(role)"), "\(path): \(refused.stderr)")
        }
    }
}

/// Debian's `chromium`, headless: what a browser makes of a page.
enum Chromium {
    static let path: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// CI installs chromium (`.ci/run`) and sets this, so a missing browser fails there
    /// instead of skipping quietly.
    static let required = ProcessInfo.processInfo.environment["FOUNDRY_BATCH_REQUIRE_CHROMIUM"] != nil

    /// The page's DOM after the browser loaded it (`--dump-dom`).
    static func dumpDOM(of file: String) async throws -> String {
        guard let path else {
            if required { Issue.record("chromium is missing: .ci/run installs Debian's chromium package for this test") }
            throw Missing()
        }
        let profile = NSTemporaryDirectory() + "chromium-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--user-data-dir=\(profile)", "--dump-dom", URL(fileURLWithPath: file).absoluteString,
        ]
        let (process, out, err) = try CLI.launch(path, arguments)
        let result = try await CLI.finish(process, out, err, timeout: 60)
        #expect(result.status == 0, "chromium: \(result.stderr.suffix(500))")
        return result.stdout
    }

    /// Chromium serializes as HTML (`<meta charset="utf-8">`, unclosed void elements): close
    /// them so the strict reader can take the text it shows.
    static func xmlSafe(_ dom: String) -> String {
        var text = dom.replacingOccurrences(of: "<!DOCTYPE html>", with: "")
        for tag in ["meta", "input", "br"] {
            text = text.replacingOccurrences(of: "<\(tag)([^>]*[^/])>", with: "<\(tag)$1/>", options: .regularExpression)
        }
        return text
    }

    struct Missing: Error {}
}
