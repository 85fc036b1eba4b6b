import Foundation

/// The state of a job's queue, for `status` and scripts.
public struct StatusReport: Sendable, Equatable {
    public var job: String
    public var report: QueueReport
    public var prices: JobFile.Prices?

    public init(job: String, report: QueueReport, prices: JobFile.Prices?) {
        self.job = job
        self.report = report
        self.prices = prices
    }

    public var counts: QueueCounts { report.job.counts }

    func cost(_ counts: QueueCounts) -> Double? {
        prices?.cost(counts)
    }

    static func round(_ value: Double, _ places: Double = 10000) -> JSONValue { .double((value * places).rounded() / places) }

    func fields(_ figures: QueueReport.VariantFigures) -> [(String, JSONValue)] {
        let c = figures.counts
        var pairs: [(String, JSONValue)] = [
            ("total", .int(c.total)), ("pending", .int(c.pending)), ("running", .int(c.running)),
            ("succeeded", .int(c.succeeded)), ("failed", .int(c.failed)),
            ("prompt_tokens", .int(c.promptTokens)), ("completion_tokens", .int(c.completionTokens)),
            ("attempts", .int(figures.attempts)), ("truncated", .int(c.truncated)), ("content_filtered", .int(c.filtered)),
        ]
        if let p50 = figures.latencyP50 { pairs.append(("latency_p50_ms", Self.round(p50, 10))) }
        if let p95 = figures.latencyP95 { pairs.append(("latency_p95_ms", Self.round(p95, 10))) }
        if let cost = cost(c) { pairs.append(("estimated_cost", Self.round(cost))) }
        return pairs
    }

    /// `status --json`: `job, total, pending, running, succeeded, failed, prompt_tokens,
    /// completion_tokens`, then attempts, latency, 429s, cost, `variants` and `errors`.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [("job", .string(job))] + fields(report.job)
        pairs.append(("throttled", .int(report.throttled)))
        if !report.variants.isEmpty {
            pairs.append(("variants", .array(report.variants.map { .object([("name", .string($0.counts.variant))] + fields($0)) })))
        }
        if !report.targets.isEmpty {
            pairs.append(("targets", .array(report.targets.map(Self.json))))
        }
        if !report.batches.isEmpty {
            pairs.append(("batches", .array(report.batches.map(Self.json))))
        }
        pairs.append(
            (
                "errors",
                .array(
                    report.errors.map {
                        .object([("code", .string($0.code)), ("count", .int($0.count)), ("example_id", .string($0.exampleID)), ("message", .string($0.exampleMessage))])
                    }
                )
            )
        )
        return .object(pairs)
    }

    static func json(_ batch: BatchRecord) -> JSONValue {
        let formatter = ISO8601DateFormatter()
        func date(_ value: Date?) -> JSONValue { value.map { .string(formatter.string(from: $0)) } ?? .null }
        return .object([
            ("number", .int(Int(batch.number))), ("id", batch.batchID.map(JSONValue.string) ?? .null), ("target", .string(batch.target)),
            ("model", .string(batch.model)), ("phase", .string(batch.phase.rawValue)), ("status", batch.status.map(JSONValue.string) ?? .null),
            ("rows", .int(batch.rows)), ("completed", .int(batch.completed)), ("failed", .int(batch.failed)),
            ("created", date(batch.submittedAt ?? batch.createdAt)), ("ends_by", date(batch.endsBy)),
            ("message", batch.message.map(JSONValue.string) ?? .null),
        ])
    }

    static func json(_ target: QueueReport.TargetFigures) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("name", .string(target.name)), ("requests", .int(target.requests)), ("throttled", .int(target.throttled)),
            ("prompt_tokens", .int(target.promptTokens)), ("completion_tokens", .int(target.completionTokens)),
            ("latency_p50_ms", target.latencyP50.map { round($0, 10) } ?? .null),
            ("truncated", .int(target.truncated)), ("content_filtered", .int(target.filtered)),
        ]
        if let parking = target.parking {
            let formatter = ISO8601DateFormatter()
            pairs.append(
                (
                    "parked",
                    .object([
                        ("until", parking.until.map { .string(formatter.string(from: $0)) } ?? .null), ("reason", .string(parking.reason)),
                        ("at", .string(formatter.string(from: parking.at))),
                    ])
                )
            )
        } else {
            pairs.append(("parked", .null))
        }
        return .object(pairs)
    }

    /// Tables for people.
    public var text: String {
        var rows: [[String]] = [
            ["", "total", "pending", "running", "succeeded", "failed", "attempts", "p50 ms", "p95 ms", "prompt tok", "compl. tok", "truncated", "filtered"]
        ]
        if prices != nil { rows[0].append("cost") }
        func row(_ name: String, _ f: QueueReport.VariantFigures) -> [String] {
            let c = f.counts
            var cells = [
                name, "\(c.total)", "\(c.pending)", "\(c.running)", "\(c.succeeded)", "\(c.failed)", "\(f.attempts)",
                f.latencyP50.map { String(Int($0.rounded())) } ?? "-", f.latencyP95.map { String(Int($0.rounded())) } ?? "-",
                "\(c.promptTokens)", "\(c.completionTokens)", "\(c.truncated)", "\(c.filtered)",
            ]
            if let cost = cost(c) { cells.append(String(format: "%.4f", cost)) }
            return cells
        }
        rows.append(row(job, report.job))
        for variant in report.variants { rows.append(row("  " + variant.counts.variant, variant)) }
        var text = TextTable.render(rows)
        text += "\n429 answers so far: \(report.throttled)"
        if !report.targets.isEmpty {
            text += "\ntargets:\n"
            text += TextTable.render(
                [["  target", "requests", "429s", "prompt tok", "compl. tok", "p50 ms", "truncated", "parked (last run)"]]
                    + report.targets.map { target in
                        let parked = target.parking.map { parking in
                            (parking.until.map { "until " + RowDecision.clockTime($0) } ?? "for the run") + ": "
                                + String(parking.reason.split(separator: "\n").first ?? "").prefix(70)
                        }
                        return [
                            "  " + target.name, "\(target.requests)", "\(target.throttled)", "\(target.promptTokens)", "\(target.completionTokens)",
                            target.latencyP50.map { String(Int($0.rounded())) } ?? "-", "\(target.truncated)", parked ?? "no",
                        ]
                    },
                leftAligned: [0, 7]
            )
        }
        if !report.batches.isEmpty {
            // The live ones, and the last few that ended: a nightly job makes many.
            let shown = report.batches.filter(\.phase.isLive) + report.batches.filter { !$0.phase.isLive }.suffix(5)
            text += "\nbatches (\(report.batches.count(where: \.phase.isLive)) live of \(report.batches.count)):\n"
            text += TextTable.render(
                [["  #", "batch id", "target", "state", "rows", "done", "failed", "created", "ends by"]]
                    + shown.sorted { $0.number < $1.number }.map { batch in
                        let state = batch.phase.isLive ? (batch.status ?? batch.phase.rawValue) : "collected (\(batch.status ?? "-"))"
                        return [
                            "  \(batch.number)", batch.batchID ?? "-", batch.target, state, "\(batch.rows)", "\(batch.completed)", "\(batch.failed)",
                            RowDecision.clockTime(batch.submittedAt ?? batch.createdAt), batch.endsBy.map(RowDecision.clockTime) ?? "-",
                        ]
                    },
                leftAligned: [0, 1, 2, 3, 7, 8]
            )
        }
        if !report.errors.isEmpty {
            text += "\nmost frequent errors:\n"
            text += TextTable.render(
                [["  code", "rows", "example row", "message"]]
                    + report.errors.map { ["  " + $0.code, "\($0.count)", $0.exampleID, String($0.exampleMessage.prefix(80))] },
                leftAligned: [0, 2, 3]
            )
        }
        return text
    }
}

/// Columns for terminal tables: numbers right-aligned, the named columns left-aligned.
enum TextTable {
    static func render(_ rows: [[String]], leftAligned: Set<Int> = [0]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            var line = row.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                return leftAligned.contains(index) ? cell + pad : pad + cell
            }.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            return line
        }.joined(separator: "\n")
    }
}
