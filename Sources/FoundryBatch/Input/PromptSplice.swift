/// The fast way in for the common line, `{"id": "...", "prompt": "...", "key": scalar, ...}`:
/// checked byte by byte without building a tree, its prompt's bytes spliced into each
/// variant's request body, which is built once, around a placeholder.
///
/// A line is taken only when the rows are byte for byte what ``InputLine`` and
/// ``RequestBuilder`` make of it (`PromptSpliceTests` holds it to that): no escape in any
/// string, no nested metadata, no repeated key, ASCII ids. Any other line, and every line of
/// a job whose request the placeholder cannot stand in, goes the general way, which also
/// says what is wrong with a bad one.
struct PromptSplice {
    /// One variant's body around the prompt.
    struct Arm {
        let variant: String
        let api: JobFile.API
        let deployment: String
        /// The body up to the prompt's opening quote, and from its closing quote on.
        let head: [UInt8]
        let tail: [UInt8]
        /// Prompt characters of the body other than the line's prompt (a system message).
        let otherCharacters: Int
        let cap: Int
    }

    let arms: [Arm]

    static let placeholder = "\u{1}foundry-batch-prompt\u{1}"

    /// Nil when some variant's body cannot be made this way (the job's `request` replaces
    /// the messages, or is refused for every line alike).
    init?(job: JobFile, builder: RequestBuilder) {
        var marker: [UInt8] = []
        JSONValue.writeString(Self.placeholder, to: &marker)
        var arms: [Arm] = []
        for arm in builder.arms {
            let line = InputLine(id: "splice", payload: .prompt(Self.placeholder), metadata: [])
            guard case .success(let built) = builder.build(line, variant: arm),
                job.targets.isEmpty || job.targets.contains(where: { $0.serves(built.deployment) })
            else { return nil }
            let text = Array(built.body.jsonText.utf8)
            let starts = text.indices.filter { text[$0...].starts(with: marker) }
            guard starts.count == 1, let start = starts.first else { return nil }
            arms.append(
                Arm(
                    variant: arm.name, api: built.api, deployment: built.deployment, head: Array(text[..<start]),
                    tail: Array(text[(start + marker.count)...]),
                    otherCharacters: RequestBuilder.promptCharacters(built.body) - Self.placeholder.utf8.count,
                    cap: RequestBuilder.tokenCap(built.body)
                )
            )
        }
        self.arms = arms
    }

    /// The rows of `line` (one per variant), or nil when it is not a line this path takes.
    func rows(_ line: ArraySlice<UInt8>, defaultID: () -> String, source: String) -> [NewRow]? {
        line.withUnsafeBufferPointer { (bytes: UnsafeBufferPointer<UInt8>) -> [NewRow]? in
            guard let members = Self.members(bytes) else { return nil }
            var id: String?
            var prompt: Range<Int>?
            var metadata: [UInt8] = []
            for (index, member) in members.enumerated() {
                // Repeated keys go the general way, which decides which one counts.
                if members[..<index].contains(where: { Self.equal(bytes, $0.key, member.key) }) { return nil }
                let key = bytes[member.key]
                if key.elementsEqual("\"prompt\"".utf8) {
                    guard member.value.count > 2, bytes[member.value.lowerBound] == UInt8(ascii: "\"") else { return nil }
                    prompt = member.value
                } else if key.elementsEqual("\"id\"".utf8) {
                    let value = bytes[member.value]
                    switch value.first ?? 0 {
                    case UInt8(ascii: "\""):
                        guard value.count > 2 else { return nil }
                        id = String(decoding: value.dropFirst().dropLast(), as: UTF8.self)
                    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                        id = String(decoding: value, as: UTF8.self)
                    default:
                        return nil
                    }
                    // An id must be printable; ASCII is told here, the rest the general way.
                    guard value.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
                } else if key.elementsEqual("\"messages\"".utf8) || key.elementsEqual("\"input\"".utf8) {
                    return nil
                } else {
                    metadata.append(metadata.isEmpty ? UInt8(ascii: "{") : UInt8(ascii: ","))
                    metadata.append(contentsOf: bytes[member.key])
                    metadata.append(UInt8(ascii: ":"))
                    metadata.append(contentsOf: bytes[member.value])
                }
            }
            guard let prompt else { return nil }
            if !metadata.isEmpty { metadata.append(UInt8(ascii: "}")) }
            let rowID = id ?? defaultID()
            if id == nil, !InputLine.isPrintable(rowID) { return nil }
            let metadataText = metadata.isEmpty ? nil : String(decoding: metadata, as: UTF8.self)
            let hash = RequestBuilder.contentHash(line)
            let promptCharacters = prompt.count - 2
            return arms.map { arm in
                var body = arm.head
                body.reserveCapacity(arm.head.count + prompt.count + arm.tail.count)
                body.append(contentsOf: bytes[prompt])
                body.append(contentsOf: arm.tail)
                let estimate = RequestBuilder.estimatedTokens(characters: arm.otherCharacters + promptCharacters, cap: arm.cap)
                return NewRow(
                    id: rowID, variant: arm.variant, source: source, api: arm.api, deployment: arm.deployment,
                    body: String(decoding: body, as: UTF8.self), metadata: metadataText, estimatedTokens: estimate.total,
                    estimatedPromptTokens: estimate.prompt, contentHash: hash
                )
            }
        }
    }

    static func equal(_ bytes: UnsafeBufferPointer<UInt8>, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        a.count == b.count && bytes[a].elementsEqual(bytes[b])
    }

    /// The members of a line that is one flat JSON object of escape-free strings, numbers
    /// and literals, as byte ranges (a string's with its quotes); nil for anything else,
    /// invalid JSON included.
    static func members(_ bytes: UnsafeBufferPointer<UInt8>) -> [(key: Range<Int>, value: Range<Int>)]? {
        // Outside strings JSON is ASCII, so the line is valid UTF-8 when its strings are.
        if !bytes.allSatisfy({ $0 < 0x80 }), String(validating: bytes, as: UTF8.self) == nil { return nil }
        // JSONParser's own cursor for whitespace, numbers and literals: one grammar for both
        // paths. Strings are scanned here, as only escape-free ones are taken.
        var cursor = JSONParser.Cursor(bytes: bytes)
        func at(_ ascii: Unicode.Scalar) -> Bool { cursor.index < bytes.count && bytes[cursor.index] == UInt8(ascii: ascii) }
        func string() -> Range<Int>? {
            let start = cursor.index
            cursor.index += 1
            while cursor.index < bytes.count {
                let byte = bytes[cursor.index]
                cursor.index += 1
                if byte == UInt8(ascii: "\"") { return start..<cursor.index }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            }
            return nil
        }
        func value() -> Range<Int>? {
            let start = cursor.index
            switch bytes[start] {
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try? cursor.numberRange()
            case UInt8(ascii: "t"): return (try? cursor.literal("true")).map { start..<cursor.index }
            case UInt8(ascii: "f"): return (try? cursor.literal("false")).map { start..<cursor.index }
            case UInt8(ascii: "n"): return (try? cursor.literal("null")).map { start..<cursor.index }
            default: return nil
            }
        }
        cursor.skipWhitespace()
        guard at("{") else { return nil }
        cursor.index += 1
        var members: [(key: Range<Int>, value: Range<Int>)] = []
        while true {
            cursor.skipWhitespace()
            guard at("\""), let key = string() else { return nil }
            cursor.skipWhitespace()
            guard at(":") else { return nil }
            cursor.index += 1
            cursor.skipWhitespace()
            guard cursor.index < bytes.count, let value = value() else { return nil }
            members.append((key, value))
            cursor.skipWhitespace()
            if at(",") {
                cursor.index += 1
                continue
            }
            guard at("}") else { return nil }
            cursor.index += 1
            cursor.skipWhitespace()
            return cursor.index == bytes.count ? members : nil
        }
    }
}
