import Crypto
import Foundation

/// The emulator's deterministic answers: the same prompt always gets the same text, and
/// different prompts different texts, so a test can tell which row got which answer.
public enum EmulatorAnswer {
    /// The assistant text for a prompt (the last user message, or the input).
    public static func text(for prompt: String) -> String {
        let digest = EmulatorJSON.hex(SHA256.hash(data: Data(prompt.utf8)).prefix(4))
        let excerpt = prompt.prefix(48).replacingOccurrences(of: "\n", with: " ")
        return "Answer \(digest) to: \(excerpt)"
    }

    /// Tokens as the emulator counts them: a token per 4 characters, rounded up.
    public static func tokens(_ text: String) -> Int {
        max(1, (text.utf8.count + 3) / 4)
    }

    /// A small unit vector derived from the text.
    static func embedding(for text: String, dimensions: Int = 8) -> [Double] {
        let digest = Array(SHA256.hash(data: Data(text.utf8)))
        let raw = (0..<dimensions).map { Double(digest[$0 % digest.count]) - 127.5 }
        let norm = max(sqrt(raw.reduce(0) { $0 + $1 * $1 }), 1e-9)
        return raw.map { ($0 / norm * 1e6).rounded() / 1e6 }
    }
}

/// The parts of an inference request the emulator reads.
struct InferenceRequest {
    var deployment: String?
    /// All prompt text, for the TPM estimate.
    var promptText: String
    /// The text the answer is derived from: the last user message, or the input.
    var lastUserText: String
    var maxTokens: Int?
    /// The structured output asked for (`response_format`, Responses `text.format`); nil for text.
    var outputFormat: OutputFormat?

    init(body: [String: Any]) {
        deployment = body["model"] as? String
        var parts: [String] = []
        var last = ""
        if let messages = body["messages"] as? [[String: Any]] {
            for message in messages {
                let text = Self.text(message["content"])
                parts.append(text)
                if message["role"] as? String == "user" { last = text }
            }
        }
        if let input = body["input"] {
            let text = Self.text(input)
            parts.append(text)
            last = text
        }
        if let instructions = body["instructions"] as? String { parts.append(instructions) }
        if let prompt = body["prompt"] { parts.append(Self.text(prompt)) }
        promptText = parts.joined(separator: "\n")
        lastUserText = last.isEmpty ? promptText : last
        maxTokens = (body["max_tokens"] ?? body["max_completion_tokens"] ?? body["max_output_tokens"]) as? Int
        outputFormat = OutputFormat(body: body)
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case let text as String: text
        case let items as [Any]: items.map { text($0) }.joined(separator: "\n")
        case let object as [String: Any]: text(object["text"] ?? object["content"])
        default: ""
        }
    }

    /// What Azure charges against TPM on arrival: prompt characters / 4 plus max_tokens.
    var estimatedTokens: Int {
        (promptText.utf8.count + 3) / 4 + (maxTokens ?? 0)
    }
}
