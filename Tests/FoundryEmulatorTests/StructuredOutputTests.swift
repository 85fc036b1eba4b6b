import Foundation
import NIOHTTP1
import Testing
@testable import FoundryEmulator

/// The emulator's answers to requests for structured output, and its knobs that spoil them.
@Suite struct StructuredOutputTests {
    let key = [("api-key", "test-key")]
    static var schema: [String: Any] { [
        "type": "object", "additionalProperties": false, "required": ["label", "score", "tags"],
        "properties": [
            "label": ["type": "string", "enum": ["positive", "negative"]],
            "score": ["type": "integer", "minimum": 0, "maximum": 10],
            "tags": ["type": "array", "items": ["type": "string", "maxLength": 12], "minItems": 2],
        ],
    ] }

    func content(_ answer: Wire.Answer) -> String {
        (((answer.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String) ?? ""
    }

    @Test func aJSONSchemaRequestIsAnsweredWithAnInstanceOfTheSchema() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            var body = chat("Rate this")
            body["response_format"] = ["type": "json_schema", "json_schema": ["name": "rating", "strict": true, "schema": Self.schema]]
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", body, headers: key)
            let value = try #require(try JSONSerialization.jsonObject(with: Data(content(answer).utf8)) as? [String: Any])
            #expect(["positive", "negative"].contains(value["label"] as? String ?? ""))
            #expect((0...10).contains(value["score"] as? Int ?? -1))
            let tags = value["tags"] as? [String] ?? []
            #expect(tags.count >= 2 && tags.allSatisfy { $0.count <= 12 })
            #expect(Set(value.keys) == ["label", "score", "tags"])
            var object = chat("Anything")
            object["response_format"] = ["type": "json_object"]
            let plain = try await emulator.wire.json("/openai/v1/chat/completions", object, headers: key)
            #expect((try JSONSerialization.jsonObject(with: Data(content(plain).utf8)) as? [String: Any])?["answer"] != nil)
        }
    }

    @Test func theKnobsBreakOrCutAnswersAndARetryRollsAgain() async throws {
        try await Emulator.withRunning(.testing { $0.outputInvalidRate = 1 }) { emulator in
            var body = chat("Rate this")
            body["response_format"] = ["type": "json_schema", "json_schema": ["name": "rating", "schema": Self.schema]]
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", body, headers: key)
            #expect((try? JSONSerialization.jsonObject(with: Data(content(answer).utf8))) == nil, "broken JSON")
            #expect(emulator.stats.outputInvalid == 1)
        }
        try await Emulator.withRunning(.testing { $0.outputTruncatedRate = 1 }) { emulator in
            let cut = try await emulator.wire.json("/openai/v1/chat/completions", chat("Tell me more"), headers: key)
            #expect((cut.json["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "length")
            let responses = try await emulator.wire.json("/openai/v1/responses", ["model": "gpt-5-mini", "input": "Tell me more"], headers: key)
            #expect(responses.json["status"] as? String == "incomplete")
            #expect((responses.json["incomplete_details"] as? [String: Any])?["reason"] as? String == "max_output_tokens")
        }
        try await Emulator.withRunning(.testing { $0.outputTruncatedRate = 0.5; $0.seed = 7 }) { emulator in
            // The same prompt asked again rolls again: within a few tries one is whole.
            var reasons: [String] = []
            for _ in 0..<12 {
                let answer = try await emulator.wire.json("/openai/v1/chat/completions", chat("Same prompt"), headers: key)
                reasons.append((answer.json["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String ?? "")
            }
            #expect(reasons.contains("stop") && reasons.contains("length"), "\(reasons)")
        }
    }
}
