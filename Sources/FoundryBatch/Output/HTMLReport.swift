import Foundation

/// The `report` page: one self-contained HTML file about a job, for people comparing runs
/// and variants by looking.
///
/// Inline CSS and SVG only; a short inline script filters the side-by-side table and the
/// page reads the same without it. Every text from the service or the input is escaped.
/// The page is built from aggregates and a bounded sample, so its size does not grow with
/// the job.
public struct HTMLReport: Sendable {
    public var status: StatusReport
    public var details: ReportDetails
    /// The job's variants in the order the job file names them (empty outside a sweep).
    public var variants: [String]
    public var engine: JobFile.Engine
    public var generatedAt: Date

    public init(status: StatusReport, details: ReportDetails, variants: [String], engine: JobFile.Engine, generatedAt: Date) {
        self.status = status
        self.details = details
        self.variants = variants
        self.engine = engine
        self.generatedAt = generatedAt
    }

    /// How many rows the side-by-side table shows, and how much of each text.
    public static let comparedRows = 200
    public static let textLimit = 500
    /// How much of an id, a variant's or a target's name the page shows.
    static let nameLimit = 120

    var report: QueueReport { status.report }

    /// The whole page.
    public var html: String {
        var page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
        page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
        page += "<title>\(HTML.escape("foundry-batch report: " + status.job))</title><style>\(Self.style)</style></head><body>"
        page += header + totals + variantTable + targetTable + batchTable + charts + errorTable + sideBySide
        page += "<footer>Written by foundry-batch report from the job's state; run it again for newer figures.</footer>"
        return redacted(page + "</body></html>\n")
    }

    /// Values that must never reach the page, such as a key a service echoed into an answer
    /// or an error: the credentials' secrets and the targets' keys, as this process sees them.
    public var secrets: [String] = []

    /// `page` with every secret (of 8 characters or more, as written or escaped) replaced.
    func redacted(_ page: String) -> String {
        secrets.filter { $0.count >= 8 }.reduce(page) { page, secret in
            page.replacingOccurrences(of: secret, with: "[redacted]").replacingOccurrences(of: HTML.escape(secret), with: "[redacted]")
        }
    }

    var header: String {
        let counts = report.job.counts
        var lines = ["Generated \(HTML.time(generatedAt)). Engine: \(engine.rawValue)."]
        if counts.pending + counts.running > 0 {
            lines.append("In progress: \(HTML.count(counts.pending)) rows pending and \(HTML.count(counts.running)) running when this was written.")
        } else if counts.total > 0 {
            lines.append("Every row has ended.")
        }
        if let first = details.firstFinished, let last = details.lastFinished {
            lines.append(
                "Rows ended from \(HTML.time(first)) to \(HTML.time(last)) (\(ProgressReporter.duration(last.timeIntervalSince(first))))."
            )
        }
        return "<header>" + HTML.element("h1", status.job) + lines.map { HTML.element("p", $0) }.joined() + "</header>"
    }

    var totals: String {
        let figures = report.job, counts = figures.counts
        var tiles: [(String, String)] = [
            ("rows", HTML.count(counts.total)), ("succeeded", HTML.count(counts.succeeded)), ("failed", HTML.count(counts.failed)),
            ("pending", HTML.count(counts.pending + counts.running)), ("attempts", HTML.count(figures.attempts)),
            ("429 answers", HTML.count(report.throttled)), ("p50 latency", HTML.latency(figures.latencyP50)),
            ("p95 latency", HTML.latency(figures.latencyP95)), ("prompt tokens", HTML.count(counts.promptTokens)),
            ("completion tokens", HTML.count(counts.completionTokens)), ("truncated", HTML.count(counts.truncated)),
        ]
        if let cost = status.cost(counts) { tiles.append(("estimated cost", Self.money(cost))) }
        return "<section id=\"totals\"><h2>Totals</h2><dl class=\"tiles\">"
            + tiles.map { "<div>" + HTML.element("dt", $0.0) + HTML.element("dd", $0.1) + "</div>" }.joined() + "</dl></section>"
    }

    static func money(_ value: Double) -> String { String(format: "%.4f", value) }

    var costColumn: Bool { status.prices != nil }

    var variantTable: String {
        guard report.variants.contains(where: { !$0.counts.variant.isEmpty }) else { return "" }
        var headers = ["variant", "rows", "succeeded", "failed", "pending", "p50", "p95", "prompt tokens", "completion tokens", "truncated"]
        if costColumn { headers.append("cost") }
        let rows = ordered(report.variants).map { figures in
            let c = figures.counts
            var cells = HTML.element("th", c.variant) + [c.total, c.succeeded, c.failed, c.pending + c.running].map { HTML.number(HTML.count($0)) }.joined()
            cells += HTML.number(HTML.latency(figures.latencyP50)) + HTML.number(HTML.latency(figures.latencyP95))
            cells += [c.promptTokens, c.completionTokens, c.truncated].map { HTML.number(HTML.count($0)) }.joined()
            if let cost = status.cost(c) { cells += HTML.number(Self.money(cost)) }
            return cells
        }
        return "<section id=\"variants\"><h2>Variants</h2>" + HTML.table(headers, rows) + "</section>"
    }

    /// `figures` in the job file's variant order (variants it no longer names last).
    func ordered(_ figures: [QueueReport.VariantFigures]) -> [QueueReport.VariantFigures] {
        figures.sorted { a, b in
            let (x, y) = (variants.firstIndex(of: a.counts.variant) ?? .max, variants.firstIndex(of: b.counts.variant) ?? .max)
            return x != y ? x < y : a.counts.variant.utf8.lexicographicallyPrecedes(b.counts.variant.utf8)
        }
    }

    var targetTable: String {
        guard !report.targets.isEmpty else { return "" }
        var headers = ["target", "rows", "succeeded", "failed", "requests", "429s", "p50", "p95", "prompt tokens", "completion tokens", "truncated"]
        if costColumn { headers.append("cost") }
        headers.append("parked (last run)")
        let rows = report.targets.map { target in
            var cells = HTML.element("th", target.name)
            cells += [target.succeeded + target.failed, target.succeeded, target.failed, target.requests, target.throttled]
                .map { HTML.number(HTML.count($0)) }.joined()
            cells += HTML.number(HTML.latency(target.latencyP50)) + HTML.number(HTML.latency(target.latencyP95))
            cells += [target.promptTokens, target.completionTokens, target.truncated].map { HTML.number(HTML.count($0)) }.joined()
            if let cost = status.cost(target.counts) { cells += HTML.number(Self.money(cost)) }
            let parked = target.parking.map { parking in
                (parking.until.map { "until " + HTML.time($0) } ?? "for the run") + ": " + (parking.reason.split(separator: "\n").first.map(String.init) ?? "")
            }
            return cells + HTML.element("td", parked ?? "")
        }
        return "<section id=\"targets\"><h2>Targets</h2>" + HTML.table(headers, rows) + "</section>"
    }

    var batchTable: String {
        guard !report.batches.isEmpty else { return "" }
        let rows = report.batches.map { batch in
            HTML.number(String(batch.number)) + [batch.batchID ?? "", batch.target, batch.model, batch.phase.rawValue, batch.status ?? ""]
                .map { HTML.element("td", $0) }.joined()
                + [batch.rows, batch.completed, batch.failed].map { HTML.number(HTML.count($0)) }.joined()
        }
        return "<section id=\"batches\"><h2>Batches</h2>"
            + HTML.table(["#", "batch id", "target", "model", "phase", "status", "rows", "completed", "failed"], rows) + "</section>"
    }

    var charts: String {
        var out = "<section id=\"charts\"><h2>Throughput and latency</h2>"
        if details.throughput.isEmpty {
            out += HTML.element("p", "No row has ended yet.")
        } else {
            // Per minute, or per hour or day for a slow job, so the axis reads whole-ish numbers.
            let peak = Double(details.throughput.map { $0.succeeded + $0.failed }.max() ?? 0) / details.binSeconds
            let (unit, seconds) = peak * 60 >= 1 ? ("minute", 60.0) : peak * 3600 >= 1 ? ("hour", 3600.0) : ("day", 86400.0)
            let scale = seconds / details.binSeconds
            let bars = details.throughput.map { bin in
                SVGBarChart.Bar(
                    values: [Double(bin.succeeded) * scale, Double(bin.failed) * scale],
                    tip: "\(HTML.time(bin.start)) (\(ProgressReporter.duration(details.binSeconds))): \(bin.succeeded) succeeded, \(bin.failed) failed"
                )
            }
            let first = details.throughput[0].start, last = details.throughput[details.throughput.count - 1].start
            out += HTML.element("h3", "Rows ended per \(unit), in bins of \(ProgressReporter.duration(details.binSeconds))")
            out += SVGBarChart(
                title: "Rows ended per \(unit)", bars: bars,
                series: [.init(name: "succeeded", style: "ok"), .init(name: "failed", style: "bad")],
                axis: (HTML.time(first), "", HTML.time(last + details.binSeconds)), unit: "rows/\(unit == "minute" ? "min" : unit)"
            ).svg
        }
        if !details.latency.isEmpty {
            let bars = details.latency.map { bin in
                let range = bin.upper.map { "\(HTML.latency(bin.lower)) – \(HTML.latency($0))" } ?? "\(HTML.latency(bin.lower)) and more"
                return SVGBarChart.Bar(values: [Double(bin.count)], tip: "\(range): \(bin.count) rows")
            }
            let end = details.latency.last.map { $0.upper ?? $0.lower } ?? 0
            let title = details.latencyOfBatches ? "Batch turnaround of succeeded rows" : "Latency of succeeded rows answered online"
            out += HTML.element("h3", title + (details.latency.last?.upper == nil ? " (the slowest 1% in the last bar)" : ""))
            out += SVGBarChart(
                title: title,
                bars: bars, series: [.init(name: details.latencyOfBatches ? "rows (batch turnaround)" : "rows", style: "lat")],
                axis: ("0", HTML.latency(end / 2), HTML.latency(end)), unit: "rows"
            ).svg
        }
        return out + "</section>"
    }

    var errorTable: String {
        guard !report.errors.isEmpty else { return "" }
        let rows = report.errors.map { error in
            HTML.element("td", error.code) + HTML.number(HTML.count(error.count)) + HTML.element("td", ReportDetails.cut(error.exampleID, Self.nameLimit))
                + HTML.element("td", ReportDetails.cut(error.exampleMessage, 300))
        }
        return "<section id=\"errors\"><h2>Most frequent errors</h2>" + HTML.table(["error", "rows", "example row", "its message"], rows)
            + "</section>"
    }

    var sideBySide: String {
        guard !details.comparisons.isEmpty else { return "" }
        var names = variants
        for comparison in details.comparisons {
            for answer in comparison.answers where !names.contains(answer.variant) { names.append(answer.variant) }
        }
        let disagreeing = details.comparisons.count { $0.disagree }
        var out = "<section id=\"answers\"><h2>Answers side by side</h2>"
        out += HTML.element(
            "p",
            "\(details.comparisons.count) rows, \(disagreeing) of them with answers that differ between variants (shown first), then the rest in input order."
        )
        out += "<p class=\"controls\"><label>Filter <input id=\"q\" type=\"search\" oninput=\"filterAnswers()\"/></label> "
        out += "<label><input id=\"only\" type=\"checkbox\" onchange=\"filterAnswers()\"/> only rows that differ</label></p>"
        let rows = details.comparisons.map { comparison in
            var cells = "<th>" + HTML.escape(ReportDetails.cut(comparison.id, Self.nameLimit)) + (comparison.disagree ? " <span class=\"badge\">differs</span>" : "") + "</th>"
            cells += HTML.element("td", comparison.prompt ?? "", class: "a")
            for name in names {
                guard let answer = comparison.answers.first(where: { $0.variant == name }) else {
                    cells += "<td></td>"
                    continue
                }
                var facts = [answer.state.rawValue]
                if let latency = answer.latencyMs { facts.append(HTML.latency(latency)) }
                if let tokens = answer.completionTokens { facts.append("\(tokens) tok") }
                if let finish = answer.finish, finish != "stop" { facts.append(finish) }
                cells += "<td>" + HTML.element("div", answer.text ?? "", class: answer.state == .failed ? "a bad" : "a")
                    + HTML.element("div", facts.joined(separator: " · "), class: "m") + "</td>"
            }
            return cells
        }
        let classes = details.comparisons.map { $0.disagree ? "disagree" : nil }
        out += HTML.table(["row", "prompt"] + names, rows, class: "answers", rowClasses: classes) + "<script>\(Self.filterScript)</script>"
        return out + "</section>"
    }

    /// Hides the side-by-side rows that do not match the filter. Written without `<` and
    /// `&`, so the page stays well-formed XML.
    static let filterScript = """
        function filterAnswers() {
          var q = document.getElementById('q').value.toLowerCase();
          var only = document.getElementById('only').checked;
          document.querySelectorAll('table.answers tbody tr').forEach(function (row) {
            var show = row.textContent.toLowerCase().indexOf(q) !== -1;
            if (only) { show = show ? row.classList.contains('disagree') : false; }
            row.style.display = show ? '' : 'none';
          });
        }
        """

    static let style = """
        body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#1b1b1b}
        h1{font-size:22px;margin:0 0 4px}h3{font-size:14px;font-weight:600;margin:12px 0 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
        header p{margin:2px 0;color:#444}footer{margin:32px 0 8px;color:#777;font-size:12px}
        .tiles{display:flex;flex-wrap:wrap;gap:8px;margin:0}.tiles div{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:110px}
        .tiles dt{font-size:12px;color:#666}.tiles dd{margin:0;font-size:18px;font-weight:600}
        table{border-collapse:collapse;margin:4px 0;font-size:13px}th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
        thead th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
        .chart{width:100%;max-width:720px;display:block;margin:8px 0 16px}.grid{stroke:#e3e3e3}.tick{font-size:11px;fill:#555}
        .ok{fill:#2e7d32}.bad{fill:#c62828}.lat{fill:#1565c0}div.bad{color:#c62828}
        table.answers{table-layout:fixed;width:100%}table.answers th:first-child{width:9em}
        .a{white-space:pre-wrap;word-break:break-word;max-height:14em;overflow:auto}.m{color:#777;font-size:11px;margin-top:2px}
        tr.disagree th{border-left:3px solid #e65100}.badge{background:#fff3e0;color:#e65100;border-radius:4px;padding:0 4px;font-size:11px}
        .controls input[type=search]{margin-left:4px}
        """
}
