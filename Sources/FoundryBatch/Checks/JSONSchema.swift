import Foundation

/// The part of JSON Schema that structured outputs use, checked against an answer.
///
/// Keywords checked: `type` (one or a list; `integer` is a number without a fraction),
/// `properties`, `required`, `additionalProperties` (false, or a schema), `items`, `enum`,
/// `const`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers, as in
/// draft 6 and later), `minLength`, `maxLength` (in Unicode code points), `minItems`,
/// `maxItems`, and `anyOf`. Every other keyword (`$ref`, `pattern`, `format`, `oneOf`, ...)
/// is ignored: an answer is never refused for a rule this validator does not know.
///
/// ```swift
/// let schema = JSONSchema(try JSONParser.parse(#"{"type":"object","required":["name"]}"#))
/// schema.violation(of: try JSONParser.parse("{}"))   // "$: required property 'name' is missing"
/// ```
public struct JSONSchema: Sendable {
    public let schema: JSONValue

    public init(_ schema: JSONValue) {
        self.schema = schema
    }

    /// Where an answer breaks the schema, and which rule: `$.items[2].age: minimum 0`.
    public struct Violation: Sendable, Equatable, CustomStringConvertible {
        /// The path in the answer, `$` for its root.
        public var path: String
        public var rule: String
        public var description: String { "\(path): \(rule)" }
    }

    /// The first violation of the schema by `value`, nil when it conforms.
    public func violation(of value: JSONValue) -> Violation? {
        Self.check(value, against: schema, at: "$")
    }

    static func check(_ value: JSONValue, against schema: JSONValue, at path: String) -> Violation? {
        // `true` and `{}` allow anything; `false` allows nothing.
        if case .bool(let allowed) = schema { return allowed ? nil : Violation(path: path, rule: "no value is allowed here") }
        guard case .object = schema else { return nil }
        func fail(_ rule: String) -> Violation { Violation(path: path, rule: rule) }

        if let types = schema["type"].flatMap(typeNames), !types.contains(where: { Self.value(value, is: $0) }) {
            return fail("expected \(types.joined(separator: " or ")), got \(Self.kind(of: value))")
        }
        if let allowed = schema["enum"]?.arrayValue, !allowed.contains(where: { Self.same($0, value) }) {
            return fail("must be one of \(allowed.prefix(10).map(\.jsonText).joined(separator: ", "))")
        }
        if let constant = schema["const"], !Self.same(constant, value) {
            return fail("must be \(constant.jsonText)")
        }
        if let options = schema["anyOf"]?.arrayValue, !options.isEmpty, options.allSatisfy({ check(value, against: $0, at: path) != nil }) {
            return fail("matches none of anyOf")
        }
        switch value {
        case .number(let text):
            guard let number = Double(text) else { return nil }
            if let bound = schema["minimum"]?.doubleValue, number < bound { return fail("minimum \(Self.plain(bound)), got \(text)") }
            if let bound = schema["maximum"]?.doubleValue, number > bound { return fail("maximum \(Self.plain(bound)), got \(text)") }
            if let bound = schema["exclusiveMinimum"]?.doubleValue, number <= bound { return fail("exclusiveMinimum \(Self.plain(bound)), got \(text)") }
            if let bound = schema["exclusiveMaximum"]?.doubleValue, number >= bound { return fail("exclusiveMaximum \(Self.plain(bound)), got \(text)") }
        case .string(let text):
            let length = text.unicodeScalars.count
            if let bound = schema["minLength"]?.intValue, length < bound { return fail("minLength \(bound), got \(length) characters") }
            if let bound = schema["maxLength"]?.intValue, length > bound { return fail("maxLength \(bound), got \(length) characters") }
        case .array(let items):
            if let bound = schema["minItems"]?.intValue, items.count < bound { return fail("minItems \(bound), got \(items.count)") }
            if let bound = schema["maxItems"]?.intValue, items.count > bound { return fail("maxItems \(bound), got \(items.count)") }
            if let itemSchema = schema["items"] {
                for (index, item) in items.enumerated() {
                    if let violation = check(item, against: itemSchema, at: "\(path)[\(index)]") { return violation }
                }
            }
        case .object(let pairs):
            for name in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where !pairs.contains(where: { $0.0 == name }) {
                return fail("required property '\(name)' is missing")
            }
            let properties = schema["properties"]?.objectPairs ?? []
            for (name, member) in pairs {
                let memberPath = Self.member(path, name)
                if let propertySchema = properties.first(where: { $0.0 == name })?.1 {
                    if let violation = check(member, against: propertySchema, at: memberPath) { return violation }
                    continue
                }
                switch schema["additionalProperties"] {
                case .bool(false)?: return Violation(path: memberPath, rule: "additionalProperties false: '\(name)' is not allowed")
                case let extra? where extra != .bool(true):
                    if let violation = check(member, against: extra, at: memberPath) { return violation }
                default: break
                }
            }
        case .null, .bool:
            break
        }
        return nil
    }

    /// `type` as a list of names; nil when it is neither a name nor a list of names.
    static func typeNames(_ type: JSONValue) -> [String]? {
        if let name = type.stringValue { return [name] }
        let names = type.arrayValue?.compactMap(\.stringValue) ?? []
        return names.isEmpty ? nil : names
    }

    static func value(_ value: JSONValue, is type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number): true
        case ("integer", .number(let text)): Double(text).map { $0.isFinite && $0.rounded() == $0 } ?? false
        // A type this validator does not know constrains nothing.
        case (let name, _): !["null", "boolean", "string", "array", "object", "number", "integer"].contains(name)
        }
    }

    static func kind(of value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .number(let text): Double(text).map { $0.isFinite && $0.rounded() == $0 } ?? false ? "integer" : "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// JSON equality as the schema means it: numbers by value (1 equals 1.0), objects whatever their key order.
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.number(x), .number(y)): Double(x) == Double(y)
        case let (.array(x), .array(y)): x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (.object(x), .object(y)):
            x.count == y.count && x.allSatisfy { key, value in y.first { $0.0 == key }.map { same(value, $0.1) } ?? false }
        default: a == b
        }
    }

    static func member(_ path: String, _ name: String) -> String {
        let plain = !name.isEmpty && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
        return plain ? "\(path).\(name)" : "\(path)[\(JSONValue.string(name).jsonText)]"
    }

    static func plain(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
    }
}
