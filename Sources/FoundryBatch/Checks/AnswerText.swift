/// What an answer body says, as a person reads it: the text of its first message, or the
/// model's refusal.
///
/// Chat Completions answers carry it in `choices[0].message`, Responses answers in the parts
/// of their `output` items. The output checks judge this text; the report shows it.
struct AnswerText: Equatable {
    /// The first message's `content` (chat) or the first `output_text` part (Responses).
    var text: String?
    /// The model's refusal, when it declined instead of answering.
    var refusal: String?

    init(of answer: JSONValue, api: ServiceAPI) {
        if api == .responses {
            let parts = (answer["output"]?.arrayValue ?? []).flatMap { $0["content"]?.arrayValue ?? [] }
            text = parts.first(where: { $0["type"]?.stringValue == "output_text" && $0["text"]?.stringValue != nil })?["text"]?.stringValue
            refusal = parts.first(where: { $0["type"]?.stringValue == "refusal" && $0["refusal"]?.stringValue != nil })?["refusal"]?.stringValue
        } else {
            let message = answer["choices"]?.arrayValue?.first?["message"]
            text = message?["content"]?.stringValue
            refusal = message?["refusal"]?.stringValue
        }
    }

    /// What the report shows for a succeeded row whose stored answer is `body`: the text,
    /// else `refused: ...`, else the body itself (an embedding, a tool call).
    ///
    /// ``SQLiteQueue`` computes the same in SQL (`SQLiteQueue.answerSQL`); the two must agree.
    static func shown(body: String, api: ServiceAPI) -> String {
        guard let answer = try? JSONParser.parse(body) else { return body }
        let read = AnswerText(of: answer, api: api)
        return read.text ?? read.refusal.map { "refused: " + $0 } ?? body
    }

    /// The last user message of a request `body`: `messages[-1].content` (chat), or the
    /// `input` string or `input[-1].content` (Responses); nil when it is not text.
    static func prompt(ofRequest body: String) -> String? {
        guard let request = try? JSONParser.parse(body) else { return nil }
        if let content = request["messages"]?.arrayValue?.last?["content"]?.stringValue { return content }
        if let input = request["input"]?.stringValue { return input }
        return request["input"]?.arrayValue?.last?["content"]?.stringValue
    }
}
