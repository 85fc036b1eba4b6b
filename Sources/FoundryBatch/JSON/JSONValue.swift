/// A JSON value that keeps object key order and number text exactly as written.
///
/// Request bodies pass through foundry-batch unchanged, so the loader parses a line once,
/// edits only the keys it must (`model`, the job's `request` overrides) and writes it back
/// with the caller's key order and number spelling intact.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's text as it appeared in the source (`1`, `0.50`, `1e3`).
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Key/value pairs in source order. Duplicate keys keep the last value on lookup.
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case let (.bool(a), .bool(b)): a == b
        case let (.number(a), .number(b)): a == b
        case let (.string(a), .string(b)): a == b
        case let (.array(a), .array(b)): a == b
        case let (.object(a), .object(b)):
            a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// Looks up a key of an object; `nil` for other values or a missing key.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.last(where: { $0.0 == key })?.1
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int? {
        switch self {
        case .number(let text): Int(text) ?? Double(text).flatMap { $0.isFinite ? Int(exactly: $0.rounded()) : nil }
        case .string(let text): Int(text)
        default: nil
        }
    }

    public var doubleValue: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    public var objectPairs: [(String, JSONValue)]? {
        if case .object(let pairs) = self { return pairs }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    /// Returns an object with `key` set to `value`, replacing an existing key in place.
    public func setting(_ key: String, to value: JSONValue) -> JSONValue {
        guard case .object(let pairs) = self else { return self }
        var replaced = false
        var result: [(String, JSONValue)] = pairs.compactMap { pair in
            guard pair.0 == key else { return pair }
            if replaced { return nil }
            replaced = true
            return (key, value)
        }
        if !replaced { result.append((key, value)) }
        return .object(result)
    }

    /// Returns an object without `key`.
    public func removing(_ key: String) -> JSONValue {
        guard case .object(let pairs) = self else { return self }
        return .object(pairs.filter { $0.0 != key })
    }

    /// Returns an object with the top-level keys of `overrides` set over this one's.
    public func merging(_ overrides: [(String, JSONValue)]) -> JSONValue {
        overrides.reduce(self) { $0.setting($1.0, to: $1.1) }
    }

    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }
    public static func double(_ value: Double) -> JSONValue {
        value.rounded() == value && abs(value) < 1e15 ? .number(String(Int(value))) : .number(String(value))
    }
}
