import Foundation

/// What one try of a row produced on the wire.
public enum ServiceAnswer: Sendable {
    case response(status: Int, headers: [(String, String)], body: [UInt8], latencyMs: Double)
    case timedOut(latencyMs: Double)
    /// The connection failed or dropped before a whole answer arrived.
    case connectionFailed(reason: String, latencyMs: Double)
}

/// The `usage` block of a chat, responses or embeddings answer.
///
/// These Codable types are what the runner reads from an answer; the emulator's tests
/// decode its answers with them too, so the two cannot drift apart.
public struct ServiceUsage: Decodable, Sendable, Equatable {
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var totalTokens: Int?

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
        case inputTokens = "input_tokens", outputTokens = "output_tokens"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try container.decodeIfPresent(Int.self, forKey: .promptTokens) ?? container.decodeIfPresent(Int.self, forKey: .inputTokens)
        completionTokens =
            try container.decodeIfPresent(Int.self, forKey: .completionTokens) ?? container.decodeIfPresent(Int.self, forKey: .outputTokens)
        totalTokens = try container.decodeIfPresent(Int.self, forKey: .totalTokens)
    }
}

/// The parts of an answer body the runner reads: usage on success, the error otherwise.
public struct ServiceBody: Decodable, Sendable {
    public struct ErrorDetail: Decodable, Sendable, Equatable {
        public var code: String?
        public var message: String?
        public var type: String?

        enum CodingKeys: String, CodingKey { case code, message, type }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            // Azure sends "code": "429" as text, some gateways as a number.
            if let text = try? container.decodeIfPresent(String.self, forKey: .code) {
                code = text
            } else if let number = try? container.decodeIfPresent(Int.self, forKey: .code) {
                code = String(number)
            }
            message = try? container.decodeIfPresent(String.self, forKey: .message)
            type = try? container.decodeIfPresent(String.self, forKey: .type)
        }
    }

    public var usage: ServiceUsage?
    public var error: ErrorDetail?

    /// Decodes a body; `nil` when it is not a JSON object.
    public static func decode(_ bytes: [UInt8]) -> ServiceBody? {
        try? JSONDecoder().decode(ServiceBody.self, from: Data(bytes))
    }
}
