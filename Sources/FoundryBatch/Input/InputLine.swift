/// One input line, understood: who it is, what to send, and what to echo back.
struct InputLine {
    enum Payload {
        /// A Batch API line: the body is sent as is (bar `model` and variant overrides).
        case batch(api: JobFile.API, body: JSONValue)
        case prompt(String)
        case messages(JSONValue)
        case input(JSONValue)
    }

    var id: String
    var payload: Payload
    /// Keys of a simple line other than id and the prompt, in order.
    var metadata: [(String, JSONValue)]
    /// The digest of the line's bytes, to tell a reload from an edited line.
    var contentHash: String = ""

    var isBatch: Bool {
        if case .batch = payload { return true }
        return false
    }

    /// Whether `text` is free of control characters (NUL, line breaks, escapes): an id or a
    /// model name with one would be cut or mangled in the state database, a URL or a terminal.
    static func isPrintable(_ text: String) -> Bool {
        // Printable ASCII, the usual case, is told without Unicode's tables, which cost a
        // million-line load a twentieth of its time.
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return true }
        return !text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    static let batchURLs: [String: JobFile.API] = [
        "/v1/chat/completions": .chat,
        "/chat/completions": .chat,
        "/v1/responses": .responses,
        "/v1/embeddings": .embeddings,
    ]

    /// Interprets a line of either format; the message says what is wrong in the user's terms.
    static func parse(_ bytes: ArraySlice<UInt8>, defaultID: @autoclosure () -> String) -> Result<InputLine, LineProblem> {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            if String(validating: bytes, as: UTF8.self) == nil { return .failure(LineProblem("invalid UTF-8")) }
            return .failure(LineProblem("not valid JSON: \(error)"))
        }
        guard case .object(let pairs) = value else {
            return .failure(LineProblem("expected a JSON object, got \(kind(of: value))"))
        }
        // A line with a prompt is a simple line, whatever its metadata is called: article
        // data sets carry "url" and "body" keys of their own.
        let hasPrompt = value["prompt"] != nil || value["messages"] != nil || value["input"] != nil
        let parsed =
            !hasPrompt && (value["custom_id"] != nil || (value["url"] != nil && value["body"] != nil))
            ? batchLine(value, pairs: pairs) : simpleLine(value, pairs: pairs, defaultID: defaultID)
        if case .success(let line) = parsed, !isPrintable(line.id) {
            return .failure(LineProblem("the id \(JSONValue.string(line.id).jsonText) holds control characters (such as \\u0000 or a line break); use printable text"))
        }
        return parsed.map { line in
            var hashed = line
            hashed.contentHash = RequestBuilder.contentHash(bytes)
            return hashed
        }
    }

    static func kind(of value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    static func batchLine(_ value: JSONValue, pairs: [(String, JSONValue)]) -> Result<InputLine, LineProblem> {
        guard let id = value["custom_id"]?.stringValue, !id.isEmpty else {
            return .failure(LineProblem("a Batch API line needs \"custom_id\" as a non-empty string"))
        }
        if let method = value["method"], method.stringValue?.uppercased() != "POST" {
            return .failure(LineProblem("custom_id '\(id)': method must be \"POST\""))
        }
        guard let url = value["url"]?.stringValue else {
            return .failure(LineProblem("custom_id '\(id)': a Batch API line needs \"url\""))
        }
        guard let api = batchURLs[url] else {
            return .failure(
                LineProblem("custom_id '\(id)': url '\(url)' is not one of \(batchURLs.keys.sorted().joined(separator: ", "))")
            )
        }
        guard let body = value["body"], case .object = body else {
            return .failure(LineProblem("custom_id '\(id)': \"body\" must be a JSON object"))
        }
        let known: Set<String> = ["custom_id", "method", "url", "body"]
        return .success(InputLine(id: id, payload: .batch(api: api, body: body), metadata: pairs.filter { !known.contains($0.0) }))
    }

    static func simpleLine(_ value: JSONValue, pairs: [(String, JSONValue)], defaultID: () -> String) -> Result<InputLine, LineProblem> {
        let id: String
        switch value["id"] {
        case nil: id = defaultID()
        case .string(let text) where !text.isEmpty: id = text
        case .number(let text): id = text
        default: return .failure(LineProblem("\"id\" must be a non-empty string or a number"))
        }
        let present = ["prompt", "messages", "input"].filter { value[$0] != nil }
        guard present.count == 1, let key = present.first, let content = value[key] else {
            return .failure(
                LineProblem(
                    present.isEmpty
                        ? "id '\(id)': no prompt: give \"prompt\", \"messages\" or \"input\" (or a Batch API line with \"custom_id\")"
                        : "id '\(id)': give only one of \(present.map { "\"\($0)\"" }.joined(separator: ", "))"
                )
            )
        }
        let payload: Payload
        switch key {
        case "prompt":
            guard let text = content.stringValue, !text.isEmpty else {
                return .failure(LineProblem("id '\(id)': \"prompt\" must be a non-empty string"))
            }
            payload = .prompt(text)
        case "messages":
            guard let items = content.arrayValue, !items.isEmpty,
                items.allSatisfy({ $0["role"]?.stringValue != nil && $0["content"] != nil })
            else {
                return .failure(LineProblem("id '\(id)': \"messages\" must be a non-empty array of {\"role\", \"content\"} objects"))
            }
            payload = .messages(content)
        default:
            switch content {
            case .string(let text) where !text.isEmpty: break
            case .array(let items) where !items.isEmpty: break
            default: return .failure(LineProblem("id '\(id)': \"input\" must be a non-empty string or array"))
            }
            payload = .input(content)
        }
        let metadata = pairs.filter { $0.0 != "id" && $0.0 != key }
        return .success(InputLine(id: id, payload: payload, metadata: metadata))
    }
}

/// Why a line was rejected (the loader adds `file:line`).
struct LineProblem: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
