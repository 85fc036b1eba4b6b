import Crypto
import Foundation

/// The structured output a request asks for, and the content the emulator answers it with.
///
/// Chat names it in `response_format`, the Responses API in `text.format`. Both spellings are
/// read whatever the operation: a body carries only the one its API knows.
enum OutputFormat {
    /// `json_schema`: the content is an instance of this schema.
    case jsonSchema(Any)
    /// `json_object`: the content is some JSON object.
    case jsonObject

    /// The format a body asks for; nil for plain text (no format, or `"type": "text"`).
    init?(body: [String: Any]) {
        let format = (body["response_format"] as? [String: Any]) ?? ((body["text"] as? [String: Any])?["format"] as? [String: Any])
        guard let format, let type = format["type"] as? String else { return nil }
        switch type {
        case "json_schema":
            // Chat nests the schema in `json_schema`; Responses puts it beside `type`.
            let schema = (format["json_schema"] as? [String: Any])?["schema"] ?? format["schema"]
            let empty: Any = [String: Any]()
            self = .jsonSchema(schema ?? empty)
        case "json_object":
            self = .jsonObject
        default:
            return nil
        }
    }

    /// The answer's content for a prompt: compact JSON text, the same for the same prompt.
    func content(for prompt: String) -> String {
        switch self {
        case .jsonObject:
            return SchemaInstance.json(["answer": EmulatorAnswer.text(for: prompt)])
        case .jsonSchema(let schema):
            return SchemaInstance.json(SchemaInstance(schema: schema, prompt: prompt).instance())
        }
    }

    /// Content made invalid JSON, for `output_invalid_rate`.
    static func broken(_ content: String) -> String {
        // Dropping the closing brace or bracket breaks an object or array; a scalar root can
        // stay valid with a character less ("42" is "4"), so it gets a stray brace instead.
        content.hasPrefix("{") || content.hasPrefix("[") ? String(content.dropLast()) : content + "}"
    }
}

/// A deterministic instance of a JSON Schema, derived from the prompt: the same prompt always
/// gets the same instance and different prompts different ones, so a test can tell which row
/// got which answer, as with ``EmulatorAnswer/text(for:)``.
///
/// It covers what strict structured output allows and the output checks validate: `type` (of a
/// list, the first that is not `null`), `properties` (every one written) and `required`, `items`
/// and `prefixItems`, `enum`, `const`, `anyOf`/`oneOf` (the first branch that is not `null`),
/// local `$ref`s, `minimum`/`maximum` (and the exclusive ones), `multipleOf`,
/// `minLength`/`maxLength`, the common string formats, `minItems`/`maxItems`. `pattern` and
/// `allOf` are not honoured.
struct SchemaInstance {
    let root: Any
    let prompt: String
    /// Plain strings are this text, cut to `maxLength` or repeated up to `minLength`.
    let text: String

    /// How deep the generator follows a schema: a `$ref` cycle ends here, in `null`.
    static let maxDepth = 32
    /// Deeper than this, an array gets only the items `minItems` asks for, so a recursive
    /// schema (a tree of nodes with children) ends well before ``maxDepth``.
    static let shallowDepth = 8
    /// Ceilings on what a schema can make the emulator build.
    static let maxItems = 1_000
    static let maxLength = 100_000

    init(schema: Any, prompt: String) {
        root = schema
        self.prompt = prompt
        text = EmulatorAnswer.text(for: prompt)
    }

    /// The instance of the whole schema.
    func instance() -> Any {
        value(of: root, path: "#", depth: 0)
    }

    /// Compact JSON text of a value, keys sorted so the same instance is always the same text.
    static func json(_ value: Any) -> String {
        // Written inside an array so that a scalar root (a fragment) serializes as well.
        let wrapped: [Any] = [value]
        guard JSONSerialization.isValidJSONObject(wrapped),
            let data = try? JSONSerialization.data(withJSONObject: wrapped, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return "null" }
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }

    /// The value for the schema at `path` (a JSON pointer into the instance, which also seeds
    /// its choices, so two fields of one answer differ).
    func value(of node: Any?, path: String, depth: Int) -> Any {
        // `true` and `{}` accept anything, so a string will do.
        guard let schema = node as? [String: Any] else { return text }
        guard depth < Self.maxDepth else { return NSNull() }
        if let reference = schema["$ref"] as? String {
            return value(of: resolve(reference), path: path, depth: depth + 1)
        }
        if let constant = schema["const"] { return constant }
        if let options = schema["enum"] as? [Any], !options.isEmpty {
            return options[Int(hash(path) % UInt64(options.count))]
        }
        for keyword in ["anyOf", "oneOf"] {
            guard let branches = schema[keyword] as? [Any], let first = branches.first else { continue }
            let chosen = branches.first(where: { !Self.isNull($0) }) ?? first
            return value(of: chosen, path: path, depth: depth + 1)
        }
        switch Self.typeName(schema) {
        case "object": return object(schema, path: path, depth: depth)
        case "array": return array(schema, path: path, depth: depth)
        case "integer": return integer(schema, path: path)
        case "number": return number(schema, path: path)
        case "boolean": return hash(path) & 1 == 0
        case "null": return NSNull()
        default: return string(schema, path: path)
        }
    }

    /// The schema's type: of a list, the first that is not `null`; guessed from the other
    /// keywords when there is none.
    static func typeName(_ schema: [String: Any]) -> String {
        if let name = schema["type"] as? String { return name }
        if let list = schema["type"] as? [Any] {
            let names = list.compactMap { $0 as? String }
            if let name = names.first(where: { $0 != "null" }) ?? names.first { return name }
        }
        if schema["properties"] != nil || schema["required"] != nil || schema["additionalProperties"] != nil { return "object" }
        if schema["items"] != nil || schema["prefixItems"] != nil || schema["minItems"] != nil || schema["maxItems"] != nil { return "array" }
        if schema["minimum"] != nil || schema["maximum"] != nil || schema["exclusiveMinimum"] != nil || schema["exclusiveMaximum"] != nil {
            return "number"
        }
        return "string"
    }

    /// Whether an `anyOf` branch is only `{"type": "null"}`: an optional field's other half.
    static func isNull(_ branch: Any) -> Bool {
        (branch as? [String: Any])?["type"] as? String == "null"
    }

    /// The schema a local `$ref` (`#`, `#/$defs/Name`, any JSON pointer) names; nil when none.
    func resolve(_ reference: String) -> Any? {
        guard reference.hasPrefix("#") else { return nil }
        var node: Any? = root
        for raw in reference.dropFirst().split(separator: "/") {
            let token = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let object = node as? [String: Any] {
                node = object[token]
            } else if let list = node as? [Any], let index = Int(token), list.indices.contains(index) {
                node = list[index]
            } else {
                return nil
            }
        }
        return node
    }

    func object(_ schema: [String: Any], path: String, depth: Int) -> [String: Any] {
        var result: [String: Any] = [:]
        for (name, property) in (schema["properties"] as? [String: Any]) ?? [:] {
            result[name] = value(of: property, path: path + "/" + name, depth: depth + 1)
        }
        // A required name the properties leave out must be there all the same.
        for case let name as String in (schema["required"] as? [Any]) ?? [] where result[name] == nil {
            result[name] = value(of: [String: Any](), path: path + "/" + name, depth: depth + 1)
        }
        return result
    }

    func array(_ schema: [String: Any], path: String, depth: Int) -> [Any] {
        // `prefixItems` (2020-12), or `items` as a list (the older tuple form), fix the first items.
        let prefix = (schema["prefixItems"] as? [Any]) ?? (schema["items"] as? [Any]) ?? []
        let items: Any = (schema["items"] as? [String: Any]) ?? [String: Any]()
        let lower = max(Self.integer(schema["minItems"]) ?? 0, 0)
        // One item shows the item's shape.
        var count = max(depth > Self.shallowDepth ? lower : max(lower, 1), prefix.count)
        if let upper = Self.integer(schema["maxItems"]) { count = min(count, max(upper, 0)) }
        count = min(count, Self.maxItems)
        return (0..<count).map { index in
            value(of: index < prefix.count ? prefix[index] : items, path: path + "/" + String(index), depth: depth + 1)
        }
    }

    func integer(_ schema: [String: Any], path: String) -> Any {
        var lower: Double?
        var upper: Double?
        if let minimum = Self.number(schema["minimum"]) { lower = minimum.rounded(.up) }
        if let exclusive = Self.number(schema["exclusiveMinimum"]) { lower = max(lower ?? -.infinity, exclusive.rounded(.down) + 1) }
        if let maximum = Self.number(schema["maximum"]) { upper = maximum.rounded(.down) }
        if let exclusive = Self.number(schema["exclusiveMaximum"]) { upper = min(upper ?? .infinity, exclusive.rounded(.up) - 1) }
        let h = hash(path)
        var value: Double
        switch (lower, upper) {
        case let (lower?, upper?):
            value = upper < lower ? lower : lower + Double(h % UInt64(min(upper - lower, 1e15) + 1))
        case let (lower?, nil):
            value = lower + Double(h % 100)
        case let (nil, upper?):
            value = upper - Double(h % 100)
        case (nil, nil):
            value = Double(h % 100)
        }
        if let step = Self.number(schema["multipleOf"]), step >= 1, step.rounded() == step {
            value = (value / step).rounded(.up) * step
            if let upper, value > upper { value -= step }
        }
        if let whole = Int(exactly: value) { return whole }
        return value.isFinite ? value : 0
    }

    func number(_ schema: [String: Any], path: String) -> Any {
        let minimum = Self.number(schema["minimum"])
        let maximum = Self.number(schema["maximum"])
        let exclusiveMinimum = Self.number(schema["exclusiveMinimum"])
        let exclusiveMaximum = Self.number(schema["exclusiveMaximum"])
        /// Whether a value meets every bound.
        func fits(_ x: Double) -> Bool {
            x.isFinite && (minimum.map { x >= $0 } ?? true) && (maximum.map { x <= $0 } ?? true)
                && (exclusiveMinimum.map { x > $0 } ?? true) && (exclusiveMaximum.map { x < $0 } ?? true)
        }
        let lower = [minimum, exclusiveMinimum].compactMap { $0 }.max()
        let upper = [maximum, exclusiveMaximum].compactMap { $0 }.min()
        let h = hash(path)
        let unit = Double(h >> 11) / Double(UInt64(1) << 53)
        var value: Double
        switch (lower, upper) {
        case let (lower?, upper?):
            // Inside the range, never on an edge, so exclusive bounds hold too.
            value = upper <= lower ? lower : lower + (upper - lower) * (0.1 + 0.8 * unit)
        case let (lower?, nil):
            value = lower + 1 + Double(h % 10_000) / 100
        case let (nil, upper?):
            value = upper - 1 - Double(h % 10_000) / 100
        case (nil, nil):
            value = Double(h % 10_000) / 100
        }
        if let step = Self.number(schema["multipleOf"]), step > 0 {
            let stepped = (value / step).rounded() * step
            if fits(stepped) { value = stepped }
        } else {
            // Two decimals read better, kept only while they stay inside the bounds.
            let rounded = (value * 100).rounded() / 100
            if fits(rounded) { value = rounded }
        }
        return value.isFinite ? value : 0.0
    }

    func string(_ schema: [String: Any], path: String) -> String {
        let h = hash(path)
        let base: String
        switch (schema["format"] as? String) ?? "" {
        case "date-time": base = Self.date(h) + "T" + Self.time(h >> 20)
        case "date": base = Self.date(h)
        case "time": base = Self.time(h)
        case "email": base = "answer-\(Self.hex(h))@example.com"
        case "hostname": base = "answer-\(Self.hex(h)).example.com"
        case "uri", "url": base = "https://example.com/answers/\(Self.hex(h))"
        case "ipv4": base = "10.\(h % 256).\((h >> 8) % 256).\((h >> 16) % 256)"
        case "uuid": base = uuid(path)
        default: base = text
        }
        return Self.fit(base, minLength: Self.integer(schema["minLength"]), maxLength: Self.integer(schema["maxLength"]))
    }

    /// The text repeated up to `minLength` and cut to `maxLength`, counted in code points as
    /// JSON Schema counts a string's length.
    static func fit(_ base: String, minLength: Int?, maxLength: Int?) -> String {
        let lower = min(max(minLength ?? 0, 0), Self.maxLength)
        let filler = base.isEmpty ? Array("x".unicodeScalars) : Array(base.unicodeScalars)
        var scalars = Array(base.unicodeScalars)
        let space: Unicode.Scalar = " "
        while scalars.count < lower {
            if !scalars.isEmpty { scalars.append(space) }
            scalars += filler
        }
        if let maxLength, scalars.count > max(maxLength, 0) { scalars = Array(scalars.prefix(max(maxLength, 0))) }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// 64 bits of SHA-256 of the prompt and a path.
    func hash(_ path: String) -> UInt64 {
        SHA256.hash(data: Data((prompt + "\u{0}" + path).utf8)).prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// A version-4-shaped UUID from the prompt and the path.
    func uuid(_ path: String) -> String {
        var digits = Array(EmulatorJSON.hex(SHA256.hash(data: Data((prompt + "\u{0}" + path).utf8))))
        digits[12] = "4"
        digits[16] = "8"
        func part(_ start: Int, _ length: Int) -> String { String(digits[start..<(start + length)]) }
        return [part(0, 8), part(8, 4), part(12, 4), part(16, 4), part(20, 12)].joined(separator: "-")
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(UInt32(truncatingIfNeeded: value), radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    static func two(_ value: UInt64) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }

    /// A date in 2020...2029 (days 1...28, so every month has it).
    static func date(_ h: UInt64) -> String {
        "20\(20 + h % 10)-\(two(1 + (h >> 8) % 12))-\(two(1 + (h >> 16) % 28))"
    }

    static func time(_ h: UInt64) -> String {
        "\(two(h % 24)):\(two((h >> 8) % 60)):\(two((h >> 16) % 60))Z"
    }

    /// A JSON number as a Double: a schema's bound or count, parsed as Int or Double.
    static func number(_ value: Any?) -> Double? {
        if let whole = value as? Int { return Double(whole) }
        if let real = value as? Double, real.isFinite { return real }
        return nil
    }

    static func integer(_ value: Any?) -> Int? {
        Self.number(value).flatMap { Int(exactly: $0.rounded(.down)) }
    }
}
