import Foundation

/// `run --dry-run`: what a run would send, and roughly what it would cost, without sending.
public struct DryRunReport: Sendable, Equatable {
    public var job: String
    public var rows: Int
    public var promptTokens: Int
    /// The sum of the answers' token caps: completion tokens will be at most this.
    public var completionCap: Int
    public var prices: JobFile.Prices?
    /// `engine: batch` or `auto`: the files a batch run would upload, per model and API.
    public var batchFiles: [BatchFiles]?

    /// The files of one model and API: how many, and their lines and bytes.
    public struct BatchFiles: Sendable, Equatable {
        public var model: String
        public var api: ServiceAPI
        public var files: Int
        public var rows: Int
        public var bytes: Int

        /// The files `group` is cut into within `batch`'s limits (a file per limit reached).
        init(_ group: PendingGroup, batch: JobFile.Batch) {
            model = group.model
            api = group.api
            rows = group.rows
            // Each line adds its envelope to the stored body, as the engine writes it.
            bytes = group.bytes + group.rows * 96
            files = max(1, (rows + batch.maxRequestsPerFile - 1) / batch.maxRequestsPerFile, (bytes + batch.maxBytesPerFile - 1) / batch.maxBytesPerFile)
        }
    }

    /// Prompt cost plus the cost of every answer reaching its cap: an upper bound, at the
    /// batch price for a batch run.
    public var maximumCost: Double? {
        guard let prices else { return nil }
        return prices.cost(prompt: promptTokens, completion: completionCap) * (batchFiles == nil ? 1 : prices.batchFactor)
    }

    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("job", .string(job)), ("rows_to_send", .int(rows)), ("estimated_prompt_tokens", .int(promptTokens)),
            ("completion_token_cap", .int(completionCap)),
        ]
        if let maximumCost { pairs.append(("maximum_cost", .double((maximumCost * 10000).rounded() / 10000))) }
        if let batchFiles {
            pairs.append(
                (
                    "batch_files",
                    .array(
                        batchFiles.map {
                            .object([("model", .string($0.model)), ("api", .string($0.api.rawValue)), ("files", .int($0.files)), ("rows", .int($0.rows)), ("bytes", .int($0.bytes))])
                        }
                    )
                )
            )
        }
        return .object(pairs)
    }

    public var text: String {
        var lines = [
            "\(job): dry run, nothing sent",
            "  \(rows) rows to send",
            "  about \(promptTokens) prompt tokens; answers capped at \(completionCap) tokens in all",
        ]
        for group in batchFiles ?? [] {
            lines.append("  batch: \(group.files) file\(group.files == 1 ? "" : "s") of \(group.model) (\(group.api.rawValue)): \(group.rows) lines, about \(group.bytes / 1000) kB")
        }
        if let maximumCost {
            lines.append(String(format: "  estimated cost at most %.4f", maximumCost) + (batchFiles == nil ? "" : " (at the batch price)"))
        }
        if completionCap == 0, rows > 0 { lines.append("  (no max_tokens set: the answers' length is not capped, so their cost is not estimated)") }
        return lines.joined(separator: "\n")
    }
}
