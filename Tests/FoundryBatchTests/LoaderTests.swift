import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

@Suite struct LoaderTests {
    func loadError(_ fixture: Fixture, _ text: String) async throws -> InputError? {
        do {
            _ = try await fixture.load(text)
            return nil
        } catch let error as InputError {
            return error
        }
    }

    @Test func loadsBothFormatsWithMetadataAndDefaultIDs() async throws {
        let fixture = try await Fixture(yaml: "request: {system: 'Be brief.', max_tokens: 10}")
        let report = try await fixture.load(
            """
            {"id": "a", "prompt": "Hello", "topic": "t1"}
            {"prompt": "No id here"}
            {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]}}
            {"id": 7, "messages": [{"role": "user", "content": "Hi"}]}
            """
        )
        #expect(report.inserted == 4)
        var rows: [ExportRow] = []
        try await fixture.queue.forEachFinished { rows.append($0) }
        #expect(rows.isEmpty)
        let claimed = try await fixture.queue.claim(owner: "t", limit: 10, leaseUntil: Date() + 60, now: Date())
        #expect(claimed.map(\.id) == ["a", "in.jsonl:2", "b", "7"])
        #expect(claimed[0].body == #"{"model":"gpt-5-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}],"max_tokens":10}"#)
        #expect(claimed[2].deployment == "gpt-4.1")
        #expect(claimed[2].body.contains(#""model":"gpt-4.1""#))
        #expect(!claimed[2].body.contains("Be brief"), "the job's request applies to simple lines only")
        #expect(claimed[0].estimatedTokens == (9 + 5 + 3) / 4 + 10)
    }

    @Test func acceptsBOMCRLFBlankLinesAndHugeLines() async throws {
        let fixture = try await Fixture()
        let huge = String(repeating: "x", count: 5_000_000)
        var bytes: [UInt8] = [0xEF, 0xBB, 0xBF]
        bytes += Array("{\"id\":\"a\",\"prompt\":\"one\"}\r\n\r\n   \n{\"id\":\"b\",\"prompt\":\"\(huge)\"}\r\n".utf8)
        let path = fixture.directory.write("in.jsonl", bytes: bytes)
        let report = try await Loader(job: fixture.job, queue: fixture.queue).load(files: [path])[0]
        #expect(report.inserted == 2)
        #expect(try await fixture.total() == 2)
    }

    @Test func emptyFileLoadsNothing() async throws {
        let fixture = try await Fixture()
        #expect(try await fixture.load("").inserted == 0)
    }

    @Test(arguments: [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        (#"{"id": "z"}"#, "no prompt"),
        (#"{"id": "z", "prompt": ""}"#, "non-empty string"),
        (#"{"id": "z", "prompt": "a", "messages": []}"#, "only one of"),
        (#"{"custom_id": "z", "url": "/v1/images", "body": {}}"#, "url '/v1/images' is not one of"),
        (#"{"custom_id": "z", "url": "/v1/chat/completions", "body": []}"#, "must be a JSON object"),
        (#"{"id": "a", "prompt": "dup"}"#, "duplicate id 'a' (first at in.jsonl:1)"),
    ])
    func badLineFailsTheWholeFileWithFileAndLine(line: String, message: String) async throws {
        let fixture = try await Fixture()
        let failure = try await loadError(fixture, "{\"id\": \"a\", \"prompt\": \"fine\"}\n\(line)\n")
        #expect(failure?.line == 2)
        #expect(failure?.file.hasSuffix("in.jsonl") == true)
        #expect(failure?.description.contains(message) == true, "\(failure?.description ?? "no error")")
        #expect(try await fixture.total() == 0, "nothing is half-loaded")
    }

    @Test func invalidUTF8IsNamed() async throws {
        let fixture = try await Fixture()
        let path = fixture.directory.write("in.jsonl", bytes: Array(#"{"id":"a","prompt":""#.utf8) + [0xC3, 0x28] + Array("\"}\n".utf8))
        await #expect(throws: InputError.self) { try await Loader(job: fixture.job, queue: fixture.queue).load(files: [path]) }
        do {
            _ = try await Loader(job: fixture.job, queue: fixture.queue).load(files: [path])
        } catch let error as InputError {
            #expect(error.description.hasSuffix("in.jsonl:1: invalid UTF-8"))
        }
    }

    @Test func missingInputSaysSo() async throws {
        let fixture = try await Fixture()
        await #expect {
            try await Loader(job: fixture.job, queue: fixture.queue).load(files: [fixture.directory.file("nope.jsonl")])
        } throws: { error in
            (error as? InputError)?.description.contains("no such file") == true && (error as? InputError)?.exitStatus == .badInput
        }
    }

    @Test(arguments: QueueKind.allCases) func reloadIsIdempotentAndAChangedRowIsAConflict(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(queue: kind)
        let text = "{\"id\": \"a\", \"prompt\": \"one\"}\n{\"id\": \"b\", \"prompt\": \"two\"}\n"
        #expect(try await fixture.load(text).inserted == 2)
        let again = try await fixture.load(text.replacingOccurrences(of: "\n", with: "\r\n"))
        #expect(again.inserted == 0)
        #expect(again.unchanged == 2)
        let failure = try await loadError(fixture, "{\"id\": \"a\", \"prompt\": \"one\"}\n{\"id\": \"b\", \"prompt\": \"CHANGED\"}\n")
        #expect(failure?.line == 2)
        #expect(failure?.description.contains("loaded before from in.jsonl:2 with different content") == true)
        #expect(try await fixture.total() == 2)
    }

    @Test func skipInvalidWritesRejectsAndLoadsTheRest() async throws {
        let fixture = try await Fixture()
        let report = try await fixture.load("{\"id\": \"a\", \"prompt\": \"one\"}\nnot json\n{\"id\": \"b\", \"prompt\": \"two\"}\n[]\n", skipInvalid: true)
        #expect(report.inserted == 2)
        #expect(report.rejected == 2)
        let rejects = fixture.directory.jsonLines("rejects.jsonl")
        #expect(rejects.count == 2)
        #expect(rejects[0]["source"]?.stringValue?.hasSuffix("in.jsonl:2") == true)
        #expect(rejects[0]["line"]?.stringValue == "not json")
        #expect(rejects[1]["error"]?.stringValue?.contains("got an array") == true)
    }

    @Test func variantsExpandEveryLine() async throws {
        let fixture = try await Fixture(
            yaml: """
                request: {temperature: 0}
                variants:
                  - {name: mini}
                  - {name: big, deployment: gpt-4.1, request: {temperature: 0.7}}
                """
        )
        #expect(try await fixture.load("{\"id\": \"a\", \"prompt\": \"one\"}\n").inserted == 2)
        let rows = try await fixture.queue.claim(owner: "t", limit: 10, leaseUntil: Date() + 60, now: Date())
        #expect(rows.map(\.variant) == ["mini", "big"])
        #expect(rows[0].body.contains(#""temperature":0"#) && rows[0].deployment == "gpt-5-mini")
        #expect(rows[1].body.contains(#""temperature":0.7"#) && rows[1].deployment == "gpt-4.1")
        let counts = try await fixture.queue.counts()
        #expect(counts.variants.map(\.variant) == ["big", "mini"])
    }

    @Test func responsesAndEmbeddingsBodies() async throws {
        let responses = try await Fixture(yaml: "api: responses\nrequest: {system: S, max_tokens: 5}")
        _ = try await responses.load("{\"id\": \"a\", \"prompt\": \"P\"}\n")
        let r = try await responses.queue.claim(owner: "t", limit: 1, leaseUntil: Date() + 60, now: Date())
        #expect(r[0].body == #"{"model":"gpt-5-mini","input":"P","instructions":"S","max_output_tokens":5}"#)
        #expect(r[0].api == .responses)
        let embeddings = try await Fixture(yaml: "api: embeddings\ndeployment: text-embedding-3-small")
        let failure = try await loadError(embeddings, "{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n")
        #expect(failure?.description.contains("embeddings job takes") == true)
    }
}
