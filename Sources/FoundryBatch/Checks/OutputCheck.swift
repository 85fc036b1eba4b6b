import FoundryAuth
import Foundation

/// What a row's request asked its answer to be (structured output), and whether it is.
///
/// A chat body with `response_format: {type: json_schema, json_schema: {schema}}` or
/// `{type: json_object}`, or a Responses body with `text.format` of those types, asks for
/// JSON; the answer's text (the chat message's `content`, or the Responses `output_text`)
/// must then parse strictly and, for a schema, conform to it (``JSONSchema``).
enum OutputCheck: Sendable {
    case jsonObject
    case schema(JSONSchema)

    /// What `body` asks for; nil for a request of plain text (or one that cannot be read).
    static func expectation(of body: String, api: ServiceAPI) -> OutputCheck? {
        keyedExpectation(of: body, api: api)?.check
    }

    /// What `body` asks for, with the format's JSON text as a key: rows of one job mostly
    /// share one schema, which a batch of 50,000 rows then holds once.
    ///
    /// The body is parsed only when it names a format: most rows pay a substring search.
    static func keyedExpectation(of body: String, api: ServiceAPI) -> (key: String, check: OutputCheck)? {
        guard api != .embeddings, contains(body, #""response_format""#) || contains(body, #""format""#),
            let request = try? JSONParser.parse(body)
        else { return nil }
        guard let format = api == .responses ? request["text"]?["format"] : request["response_format"] else { return nil }
        switch format["type"]?.stringValue {
        case "json_object":
            return (format.jsonText, .jsonObject)
        case "json_schema":
            let schema = api == .responses ? format["schema"] : format["json_schema"]?["schema"]
            return (format.jsonText, .schema(JSONSchema(schema ?? .bool(true))))
        default:
            return nil
        }
    }

    /// Whether `text` holds `word`, compared as UTF-8 bytes: Foundation's `contains` goes
    /// through CoreFoundation's locale-aware search, a cost on every answer of a large run.
    /// (`utf8.firstRange(of:)` from the standard library measured as slow as Foundation's.)
    static func contains(_ text: String, _ word: String) -> Bool {
        let needle = Array(word.utf8)
        guard let first = needle.first else { return true }
        let haystack = text.utf8
        var index = haystack.startIndex
        while let found = haystack[index...].firstIndex(of: first) {
            if haystack[found...].starts(with: needle) { return true }
            index = haystack.index(after: found)
        }
        return false
    }

    /// Why `answer` (a whole answer body) is not what was asked; nil when it is.
    func problem(with answer: JSONValue, api: ServiceAPI) -> String? {
        let read = AnswerText(of: answer, api: api)
        if let refusal = read.refusal {
            return "the model refused: \(ServiceText.printable(refusal, limit: 200))"
        }
        guard let text = read.text else { return "the answer has no text to check" }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            return "the answer is not JSON: \(error)"
        }
        switch self {
        case .jsonObject:
            guard case .object = value else { return "the answer is JSON but not an object (response_format json_object)" }
            return nil
        case .schema(let schema):
            return schema.violation(of: value).map { "the answer breaks its schema at \($0)" }
        }
    }
}
