import FoundryAuth
import Foundation

/// What one try of a row produced on the wire.
public enum ServiceAnswer: Sendable {
    case response(status: Int, headers: [(String, String)], body: [UInt8], latencyMs: Double)
    case timedOut(latencyMs: Double)
    /// The connection failed or dropped before a whole answer arrived.
    case connectionFailed(reason: String, latencyMs: Double)
    /// Not sent: the request would have carried a credential where none may go.
    case refused(reason: String)
    /// The answer was larger than `limit` bytes; it is not read further.
    case tooLarge(limit: Int, latencyMs: Double)
}

extension ServiceAnswer {
    /// The body of an answer that came back, nil for a try without one.
    public var body: [UInt8]? {
        if case .response(_, _, let body, _) = self { return body }
        return nil
    }
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

    /// Counts beyond this are not believed: no request uses a trillion tokens, and the
    /// queue's sums must not overflow.
    static let maxCount = 1_000_000_000_000

    /// A count the service sent, or nil when it is absent, not a whole number, negative or absurd.
    static func count(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) -> Int? {
        guard let value = try? container.decodeIfPresent(Int.self, forKey: key), (0...maxCount).contains(value) else { return nil }
        return value
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = Self.count(container, .promptTokens) ?? Self.count(container, .inputTokens)
        completionTokens = Self.count(container, .completionTokens) ?? Self.count(container, .outputTokens)
        totalTokens = Self.count(container, .totalTokens)
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

    enum CodingKeys: String, CodingKey { case usage, error }

    /// A body of any JSON object: a `usage` or `error` of an odd shape is left out, not a
    /// reason to treat the whole body as text.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        usage = try? container.decodeIfPresent(ServiceUsage.self, forKey: .usage)
        error = try? container.decodeIfPresent(ErrorDetail.self, forKey: .error)
    }

    /// Decodes a body; `nil` when it is not a JSON object.
    public static func decode(_ bytes: [UInt8]) -> ServiceBody? {
        try? JSONDecoder().decode(ServiceBody.self, from: Data(bytes))
    }

    /// A JSON body as one line of valid JSON text, for the state database and the results file.
    ///
    /// A body with no byte below 0x20 and no BOM is kept byte for byte: the decoder
    /// accepted it, and JSON strings cannot hold a raw control character, so it is one line
    /// already. Any other (pretty-printed, a BOM in front, a raw tab or NUL in a string) is
    /// parsed strictly and written compact, key order and number text kept; what the strict
    /// parser refuses is kept as a JSON string.
    public static func compactText(_ bytes: [UInt8]) -> String {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let hasBOM = bytes.starts(with: bom)
        guard hasBOM || bytes.contains(where: { $0 < 0x20 }) else { return String(decoding: bytes, as: UTF8.self) }
        if let value = try? JSONParser.parse(bytes.dropFirst(hasBOM ? 3 : 0)) { return value.jsonText }
        return JSONValue.string(String(decoding: bytes.prefix(65536), as: UTF8.self)).jsonText
    }
}
