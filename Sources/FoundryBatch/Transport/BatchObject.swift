import FoundryAuth
import Foundation

/// A batch as the provider describes it, read from OpenAI's and Azure's spellings alike.
///
/// OpenAI and Azure's v1 API write `status` in snake case (`in_progress`) and timestamps as
/// Unix seconds; older Azure API versions wrote `InProgress` and ISO 8601 dates. Both read
/// the same here.
public struct BatchObject: Sendable, Equatable {
    /// The status, normalised: lower case, without `_` (`inprogress`).
    public enum Status: String, Sendable {
        case validating, failed, inprogress, finalizing, completed, expired, cancelling, cancelled

        /// A status as OpenAI (`in_progress`) or Azure's older versions (`InProgress`) spell it.
        public init?(spelling: String) {
            self.init(rawValue: spelling.lowercased().replacingOccurrences(of: "_", with: ""))
        }

        /// Whether the batch will change no more: its files can be read.
        public var isTerminal: Bool {
            switch self {
            case .failed, .completed, .expired, .cancelled: true
            default: false
            }
        }
    }

    public var id: String
    /// The status as the provider spelled it, for `status`.
    public var statusText: String
    public var status: Status?
    public var inputFileID: String?
    public var outputFileID: String?
    public var errorFileID: String?
    public var total: Int?
    public var completed: Int?
    public var failed: Int?
    public var createdAt: Date?
    public var expiresAt: Date?
    /// `errors.data[]` of a batch that failed validation: code, message and line.
    public var errors: [(code: String, message: String, line: Int?)]

    public static func == (lhs: BatchObject, rhs: BatchObject) -> Bool {
        lhs.id == rhs.id && lhs.statusText == rhs.statusText && lhs.outputFileID == rhs.outputFileID
            && lhs.errorFileID == rhs.errorFileID && lhs.completed == rhs.completed && lhs.failed == rhs.failed
    }

    /// Reads a batch object; nil when it has no `id` or `status`.
    public init?(json: JSONValue) {
        guard let id = json["id"]?.stringValue, !id.isEmpty, let status = json["status"]?.stringValue else { return nil }
        self.id = id
        statusText = ServiceText.printable(status, limit: 40)
        self.status = Status(spelling: status)
        func text(_ key: String) -> String? {
            guard let value = json[key]?.stringValue, !value.isEmpty else { return nil }
            return value
        }
        inputFileID = text("input_file_id")
        outputFileID = text("output_file_id")
        errorFileID = text("error_file_id")
        let counts = json["request_counts"]
        total = ServiceUsage.count(counts?["total"])
        completed = ServiceUsage.count(counts?["completed"])
        failed = ServiceUsage.count(counts?["failed"])
        createdAt = Self.date(json["created_at"])
        expiresAt = Self.date(json["expires_at"])
        var errors: [(String, String, Int?)] = []
        if case .array(let items)? = json["errors"]?["data"] {
            for item in items.prefix(20) {
                let code = item["code"]?.stringValue ?? "validation_error"
                let message = ServiceText.printable(item["message"]?.stringValue ?? "", limit: 500)
                errors.append((ServiceText.code(code) ?? "validation_error", message, ServiceUsage.count(item["line"])))
            }
        }
        self.errors = errors
    }

    /// A timestamp in Unix seconds (a whole or fractional number) or ISO 8601 text.
    static func date(_ value: JSONValue?) -> Date? {
        switch value {
        case .number(let text)?:
            guard let seconds = Double(text), seconds.isFinite, seconds > 0, seconds < 1e11 else { return nil }
            return Date(timeIntervalSince1970: seconds)
        case .string(let text)?:
            let formatter = ISO8601DateFormatter()
            if let date = formatter.date(from: text) { return date }
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return formatter.date(from: text)
        default:
            return nil
        }
    }
}
