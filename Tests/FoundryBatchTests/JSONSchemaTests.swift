import Foundation
import Testing
@testable import FoundryBatch

/// The schema validator against cases taken from the JSON Schema specification (draft 2020-12,
/// Validation vocabulary) and the official test suite's shapes: each keyword's valid and
/// invalid instances, and the keywords it ignores.
@Suite struct JSONSchemaTests {
    func violation(_ schema: String, _ instance: String) throws -> JSONSchema.Violation? {
        JSONSchema(try JSONParser.parse(schema)).violation(of: try JSONParser.parse(instance))
    }

    func valid(_ schema: String, _ instances: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        for instance in instances {
            #expect(try violation(schema, instance) == nil, "\(instance) against \(schema)", sourceLocation: sourceLocation)
        }
    }

    func invalid(_ schema: String, _ instances: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        for instance in instances {
            #expect(try violation(schema, instance) != nil, "\(instance) against \(schema)", sourceLocation: sourceLocation)
        }
    }

    @Test func typeMatchesEachJSONTypeAndIntegerIsANumberWithoutFraction() throws {
        try valid(#"{"type":"integer"}"#, ["1", "1.0", "-0", "1e2"])
        try invalid(#"{"type":"integer"}"#, ["1.1", "\"1\"", "null", "true", "[]", "{}"])
        try valid(#"{"type":"number"}"#, ["1", "1.5", "-2e-3"])
        try invalid(#"{"type":"number"}"#, ["\"1\"", "true"])
        try valid(#"{"type":"string"}"#, ["\"\"", "\"x\""])
        try invalid(#"{"type":"string"}"#, ["1", "null"])
        try valid(#"{"type":"boolean"}"#, ["true", "false"])
        try invalid(#"{"type":"boolean"}"#, ["0", "\"true\""])
        try valid(#"{"type":"null"}"#, ["null"])
        try invalid(#"{"type":"null"}"#, ["0", "false", "\"\""])
        try valid(#"{"type":["string","null"]}"#, ["\"a\"", "null"])
        try invalid(#"{"type":["string","null"]}"#, ["1"])
        #expect(try violation(#"{"type":"string"}"#, "3")?.rule == "expected string, got integer")
    }

    @Test func propertiesRequiredAndAdditionalProperties() throws {
        let schema = #"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0}},"required":["name"],"additionalProperties":false}"#
        try valid(schema, [#"{"name":"a"}"#, #"{"name":"a","age":3}"#])
        #expect(try violation(schema, #"{"age":3}"#) == .init(path: "$", rule: "required property 'name' is missing"))
        #expect(try violation(schema, #"{"name":"a","age":-1}"#) == .init(path: "$.age", rule: "minimum 0, got -1"))
        #expect(try violation(schema, #"{"name":"a","extra":1}"#)?.path == "$.extra")
        #expect(try violation(schema, #"{"name":1}"#)?.path == "$.name")
        // additionalProperties as a schema: the other members must match it.
        let typed = #"{"properties":{"a":{}},"additionalProperties":{"type":"boolean"}}"#
        try valid(typed, [#"{"a":1,"b":true}"#])
        try invalid(typed, [#"{"a":1,"b":2}"#])
        // Absent or true: anything goes; properties apply only to objects.
        try valid(#"{"properties":{"a":{"type":"string"}}}"#, [#"{"b":1}"#, "12", "[]"])
        #expect(try violation(#"{"properties":{"a b":{"type":"string"}}}"#, #"{"a b":1}"#)?.path == #"$["a b"]"#)
    }

    @Test func itemsAndTheirCounts() throws {
        let schema = #"{"type":"array","items":{"type":"object","required":["id"]},"minItems":1,"maxItems":2}"#
        try valid(schema, [#"[{"id":1}]"#, #"[{"id":1},{"id":2}]"#])
        #expect(try violation(schema, "[]")?.rule == "minItems 1, got 0")
        #expect(try violation(schema, #"[{"id":1},{"id":2},{"id":3}]"#)?.rule == "maxItems 2, got 3")
        #expect(try violation(schema, #"[{"id":1},{}]"#) == .init(path: "$[1]", rule: "required property 'id' is missing"))
        try valid(#"{"items":{"type":"integer"}}"#, [#"{"not":"an array"}"#])
    }

    @Test func enumAndConstCompareAsJSONValues() throws {
        try valid(#"{"enum":["red","green",1,null]}"#, ["\"red\"", "1", "1.0", "null"])
        try invalid(#"{"enum":["red","green"]}"#, ["\"blue\"", "\"Red\""])
        try valid(#"{"const":{"a":[1,2]}}"#, [#"{"a":[1,2]}"#, #"{"a":[1.0,2]}"#])
        try invalid(#"{"const":{"a":[1,2]}}"#, [#"{"a":[2,1]}"#, #"{"a":[1,2],"b":0}"#])
        try valid(#"{"enum":[{"x":1,"y":2}]}"#, [#"{"y":2,"x":1}"#])
    }

    @Test func numericAndLengthBounds() throws {
        try valid(#"{"minimum":1.5,"maximum":3}"#, ["1.5", "3", "\"not a number\""])
        try invalid(#"{"minimum":1.5,"maximum":3}"#, ["1.4", "3.01"])
        try valid(#"{"exclusiveMinimum":0,"exclusiveMaximum":10}"#, ["0.1", "9.9"])
        try invalid(#"{"exclusiveMinimum":0,"exclusiveMaximum":10}"#, ["0", "10"])
        // Lengths count code points: a character outside the BMP is one.
        try valid(#"{"minLength":2,"maxLength":3}"#, ["\"ab\"", "\"a\u{1F600}\"", "5"])
        try invalid(#"{"minLength":2,"maxLength":3}"#, ["\"a\"", "\"abcd\""])
    }

    @Test func booleanSchemasAnyOfAndUnknownKeywords() throws {
        try valid("true", ["1", "null"])
        try invalid("false", ["1"])
        try valid(#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#, ["\"a\"", "1"])
        try invalid(#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#, ["1.5"])
        // Keywords the validator does not know never refuse an answer.
        try valid(##"{"pattern":"^a$","format":"email","$ref":"#/x","oneOf":[false],"type":"uuid"}"##, ["\"zzz\""])
    }
}

/// Structured-output expectations read from request bodies, and answers judged by them.
@Suite struct OutputCheckTests {
    let schema = #"{"type":"object","properties":{"label":{"enum":["yes","no"]}},"required":["label"],"additionalProperties":false}"#

    func chatAnswer(_ content: String) throws -> JSONValue {
        try JSONParser.parse(#"{"choices":[{"message":{"role":"assistant","content":\#(JSONValue.string(content).jsonText)},"finish_reason":"stop"}]}"#)
    }

    @Test func aChatSchemaIsReadAndTheAnswerValidated() throws {
        let body = #"{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":\#(schema)}}}"#
        let check = try #require(OutputCheck.expectation(of: body, api: .chat))
        #expect(check.problem(with: try chatAnswer(#"{"label":"yes"}"#), api: .chat) == nil)
        #expect(check.problem(with: try chatAnswer(#"{"label":"maybe"}"#), api: .chat)?.contains("$.label") == true)
        #expect(check.problem(with: try chatAnswer(#"{"label":"yes""#), api: .chat)?.hasPrefix("the answer is not JSON") == true)
        let refused = try JSONParser.parse(#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I cannot"}}]}"#)
        #expect(check.problem(with: refused, api: .chat)?.contains("refused") == true)
    }

    @Test func jsonObjectAndTheResponsesFormatAreReadToo() throws {
        let object = try #require(OutputCheck.expectation(of: #"{"response_format":{"type":"json_object"},"messages":[]}"#, api: .chat))
        #expect(object.problem(with: try chatAnswer("[1]"), api: .chat)?.contains("not an object") == true)
        #expect(object.problem(with: try chatAnswer(#"{"a":1}"#), api: .chat) == nil)
        let body = #"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"x","schema":\#(schema)}}}"#
        let check = try #require(OutputCheck.expectation(of: body, api: .responses))
        let answer = try JSONParser.parse(#"{"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"{\"label\":\"no\"}"}]}]}"#)
        #expect(check.problem(with: answer, api: .responses) == nil)
        #expect(OutputCheck.expectation(of: #"{"messages":[],"response_format":{"type":"text"}}"#, api: .chat) == nil)
        #expect(OutputCheck.expectation(of: #"{"messages":[{"role":"user","content":"format this"}]}"#, api: .chat) == nil)
    }

    @Test func theDecisionRetriesAnInvalidAnswerThenFailsItAndFailsATruncatedOneWhenAsked() throws {
        var limits = JobFile.Limits()
        limits.maxOutputRetries = 1
        let settings = RowDecision.Settings(limits: limits)
        let response = ResponseRecord(statusCode: 200, requestID: nil, clientRequestID: "c", body: "{}", latencyMs: 1)
        let check = OutputCheck.jsonObject
        let bad = try chatAnswer("not json")
        let first = RowDecision.judge(response, answer: bad, check: check, api: .chat, attempts: 0, outputRetries: 0, settings: settings, now: Date())
        guard case .retry(_, let error, _, true) = first else { Issue.record("an invalid answer is tried again"); return }
        #expect(error.code == "invalid_output")
        let second = RowDecision.judge(response, answer: bad, check: check, api: .chat, attempts: 1, outputRetries: 1, settings: settings, now: Date())
        guard case .failed(let final, let kept) = second else { Issue.record("out of output retries"); return }
        #expect(final.code == "invalid_output" && kept == response)
        var cut = response
        cut.finish = "length"
        #expect(RowDecision.judge(cut, answer: bad, check: check, api: .chat, attempts: 0, outputRetries: 0, settings: settings, now: Date()) == .succeeded(cut))
        limits.truncated = .fail
        let failing = RowDecision.judge(cut, answer: bad, check: nil, api: .chat, attempts: 0, outputRetries: 0, settings: RowDecision.Settings(limits: limits), now: Date())
        guard case .failed(let truncated, _) = failing else { Issue.record("truncated: fail"); return }
        #expect(truncated.code == "truncated")
    }
}
