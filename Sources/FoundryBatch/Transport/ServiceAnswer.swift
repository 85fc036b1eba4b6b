import FoundryAuth
import Foundation
import NIOHTTP1

/// What one try of a row produced on the wire.
public enum ServiceAnswer: Sendable {
    /// `headers` are kept as the client received them; look names up with `first(name:)`,
    /// which compares without case.
    case response(status: Int, headers: HTTPHeaders, body: [UInt8], latencyMs: Double)
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
/// The runner reads it from the answer's strictly parsed JSON; the emulator's tests decode
/// its answers with this type too, so the two cannot drift apart.
public struct ServiceUsage: Sendable, Equatable {
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var totalTokens: Int?

    /// Counts beyond this are not believed: no request uses a trillion tokens, and the
    /// queue's sums must not overflow.
    static let maxCount = 1_000_000_000_000

    /// A count the service sent, or nil when it is absent, not a whole number, negative or absurd.
    static func count(_ value: JSONValue?) -> Int? {
        guard case .number(let text) = value, let count = Int(text), (0...maxCount).contains(count) else { return nil }
        return count
    }

    /// Reads chat's `prompt_tokens`/`completion_tokens` or the Responses API's `input_tokens`/`output_tokens`.
    public init(json: JSONValue) {
        promptTokens = Self.count(json["prompt_tokens"]) ?? Self.count(json["input_tokens"])
        completionTokens = Self.count(json["completion_tokens"]) ?? Self.count(json["output_tokens"])
        totalTokens = Self.count(json["total_tokens"])
    }
}

/// The parts of an answer body the runner reads (usage on success, the error otherwise),
/// and the body itself as one line of valid JSON.
public struct ServiceBody: Sendable {
    public struct ErrorDetail: Sendable, Equatable {
        public var code: String?
        public var message: String?
        public var type: String?

        public init(json: JSONValue) {
            // Azure sends "code": "429" as text, some gateways as a number.
            switch json["code"] {
            case .string(let text): code = text
            case .number(let text): code = text
            default: code = nil
            }
            message = json["message"]?.stringValue
            type = json["type"]?.stringValue
        }
    }

    public var usage: ServiceUsage?
    public var error: ErrorDetail?
    /// The body as one line of valid JSON text, for the state database and the results file.
    public var text: String
    /// How the answer ended when it did not end normally: `length` (cut off at its token
    /// cap: chat's `finish_reason`, or a Responses answer `incomplete` for
    /// `max_output_tokens`) or `content_filter`.
    public var finish: String?
    /// The body, parsed: for the output checks.
    public var json: JSONValue

    static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// Parses a body strictly (RFC 8259, as every JSON reader of the results file will);
    /// nil unless it is a JSON object.
    ///
    /// A `usage` or `error` of an odd shape is left out, not a reason to refuse the body.
    /// The text is the body byte for byte when it has no byte below 0x20 and no BOM (a
    /// strictly valid JSON text without one is one line already); otherwise (pretty-printed,
    /// or a BOM in front) it is written compact, key order and number text kept. A raw
    /// control character inside a string is not JSON: such a body is no answer.
    public static func decode(_ bytes: [UInt8]) -> ServiceBody? {
        let hasBOM = bytes.starts(with: bom)
        guard let value = try? JSONParser.parse(bytes.dropFirst(hasBOM ? 3 : 0)), case .object = value else { return nil }
        let text = hasBOM || bytes.contains(where: { $0 < 0x20 }) ? value.jsonText : String(decoding: bytes, as: UTF8.self)
        let error: ErrorDetail? = if let detail = value["error"], case .object = detail { ErrorDetail(json: detail) } else { nil }
        let usage: ServiceUsage? = if let block = value["usage"], case .object = block { ServiceUsage(json: block) } else { nil }
        return ServiceBody(usage: usage, error: error, text: text, finish: finish(of: value), json: value)
    }

    /// The answer's unusual ending, `length` or `content_filter`; nil for a normal one.
    static func finish(of value: JSONValue) -> String? {
        let reason: String?
        if case .array(let choices)? = value["choices"], let first = choices.first {
            reason = first["finish_reason"]?.stringValue
        } else if value["status"]?.stringValue == "incomplete" {
            reason = value["incomplete_details"]?["reason"]?.stringValue == "content_filter" ? "content_filter" : "length"
        } else {
            reason = nil
        }
        switch reason {
        case "length", "max_tokens", "max_output_tokens": return "length"
        case "content_filter": return "content_filter"
        default: return nil
        }
    }

    /// Stored body text made safe to splice into an output line: a body stored by an older
    /// version (or edited by hand) with line breaks is compacted, or kept as a JSON string
    /// when it does not parse.
    public static func exportable(_ stored: String) -> String {
        guard stored.utf8.contains(where: { $0 < 0x20 }) else { return stored }
        if let value = try? JSONParser.parse(stored) { return value.jsonText }
        return JSONValue.string(stored).jsonText
    }
}
