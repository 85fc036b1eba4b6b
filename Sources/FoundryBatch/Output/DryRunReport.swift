import Foundation

/// `run --dry-run`: what a run would send, and roughly what it would cost, without sending.
public struct DryRunReport: Sendable, Equatable {
    public var job: String
    public var rows: Int
    public var promptTokens: Int
    /// The sum of the answers' token caps: completion tokens will be at most this.
    public var completionCap: Int
    public var prices: JobFile.Prices?

    /// Prompt cost plus the cost of every answer reaching its cap: an upper bound.
    public var maximumCost: Double? {
        prices?.cost(prompt: promptTokens, completion: completionCap)
    }

    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("job", .string(job)), ("rows_to_send", .int(rows)), ("estimated_prompt_tokens", .int(promptTokens)),
            ("completion_token_cap", .int(completionCap)),
        ]
        if let maximumCost { pairs.append(("maximum_cost", .double((maximumCost * 10000).rounded() / 10000))) }
        return .object(pairs)
    }

    public var text: String {
        var lines = [
            "\(job): dry run, nothing sent",
            "  \(rows) rows to send",
            "  about \(promptTokens) prompt tokens; answers capped at \(completionCap) tokens in all",
        ]
        if let maximumCost { lines.append(String(format: "  estimated cost at most %.4f", maximumCost)) }
        if completionCap == 0 { lines.append("  (no max_tokens set: the answers' length is not capped, so their cost is not estimated)") }
        return lines.joined(separator: "\n")
    }
}
