/// The state of a job's queue, for `status` and scripts.
public struct StatusReport: Sendable, Equatable {
    public var job: String
    public var counts: QueueCounts
    public var variants: [QueueCounts]

    public init(job: String, counts: QueueCounts, variants: [QueueCounts]) {
        self.job = job
        self.counts = counts
        self.variants = variants
    }

    public static func read(_ context: JobContext) async throws -> StatusReport {
        let (job, variants) = try await context.queue.counts()
        return StatusReport(job: context.job.name, counts: job, variants: variants)
    }

    static func fields(_ counts: QueueCounts) -> [(String, JSONValue)] {
        [
            ("total", .int(counts.total)), ("pending", .int(counts.pending)), ("running", .int(counts.running)),
            ("succeeded", .int(counts.succeeded)), ("failed", .int(counts.failed)),
            ("prompt_tokens", .int(counts.promptTokens)), ("completion_tokens", .int(counts.completionTokens)),
        ]
    }

    /// `status --json`: `job, total, pending, running, succeeded, failed, prompt_tokens,
    /// completion_tokens`, and `variants` in a sweep.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [("job", .string(job))] + Self.fields(counts)
        if !variants.isEmpty {
            pairs.append(("variants", .array(variants.map { .object([("name", .string($0.variant))] + Self.fields($0)) })))
        }
        return .object(pairs)
    }

    /// A table for people.
    public var text: String {
        var rows: [[String]] = [["", "total", "pending", "running", "succeeded", "failed", "prompt tok", "completion tok"]]
        func row(_ name: String, _ c: QueueCounts) -> [String] {
            [name, "\(c.total)", "\(c.pending)", "\(c.running)", "\(c.succeeded)", "\(c.failed)", "\(c.promptTokens)", "\(c.completionTokens)"]
        }
        rows.append(row(job, counts))
        for variant in variants { rows.append(row("  " + variant.variant, variant)) }
        return TextTable.render(rows)
    }
}

/// Right-aligned columns (the first left-aligned), for terminal tables.
enum TextTable {
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                return index == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
