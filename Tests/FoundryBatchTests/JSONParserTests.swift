import FoundryTestSupport
import Testing
@testable import FoundryBatch

@Suite struct JSONParserTests {
    @Test func keepsKeyOrderAndNumberText() throws {
        let value = try JSONParser.parse(#"{"z": 1.50, "a": [true, null, -2e3], "m": {"k": "v"}}"#)
        #expect(value.jsonText == #"{"z":1.50,"a":[true,null,-2e3],"m":{"k":"v"}}"#)
        #expect(value.objectPairs?.map(\.0) == ["z", "a", "m"])
    }

    @Test func decodesEscapesAndSurrogates() throws {
        let value = try JSONParser.parse(#""tab\there \"q\" \u00e9 \ud83d\ude00 \/""#)
        #expect(value == .string("tab\there \"q\" é 😀 /"))
        #expect(try JSONParser.parse(value.jsonText) == value)
    }

    @Test func controlCharactersAreEscapedOnOutput() throws {
        let text = JSONValue.string("a\u{01}b\nc").jsonText
        #expect(text == #""a\u0001b\nc""#)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "tru", "01", "1.", "\"\\x\"", "\"a\nb\"", "{\"a\":1} x", "\"\\ud800\"", "-", "[1 2]",
    ])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8InStrings() {
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test func capsNestingDepth() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(deep) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: Never.self) { try JSONParser.parse(fine) }
    }

    @Test func settingReplacesInPlaceAndMergingOverrides() throws {
        let value = try JSONParser.parse(#"{"model":"a","x":1}"#)
        #expect(value.setting("model", to: .string("b")).jsonText == #"{"model":"b","x":1}"#)
        #expect(value.merging([("x", .int(2)), ("y", .bool(true))]).jsonText == #"{"model":"a","x":2,"y":true}"#)
        #expect(value.removing("model").jsonText == #"{"x":1}"#)
    }
}
