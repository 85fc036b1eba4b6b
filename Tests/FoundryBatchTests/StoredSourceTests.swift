@testable import FoundryBatch
import FoundryTestSupport
import Testing

/// What SQLite keeps of a row's source, and what it says back.
@Suite struct StoredSourceTests {
    func row(_ id: String, source: String, hash: String) -> NewRow {
        NewRow(
            id: id, variant: "", source: source, api: .chat, deployment: "m", body: "{}", metadata: nil,
            estimatedTokens: 1, estimatedPromptTokens: 1, contentHash: hash
        )
    }

    @Test func aRowOfTheLoadsOwnFileIsNamedByItsFileAndLineAgain() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("state.sqlite")
        let queue = try SQLiteQueue(path: path, jobName: "t")
        _ = try await queue.withLoad(source: "/data/a.jsonl") { (load: LoadTransaction) throws in
            #expect(try load.add(row("x", source: "/data/a.jsonl:7", hash: "1")) == .inserted)
            // A source of another shape is kept whole.
            #expect(try load.add(row("y", source: "/data/a.jsonl:notes", hash: "1")) == .inserted)
            #expect(try load.add(row("x", source: "/data/a.jsonl:9", hash: "1")) == .duplicate(firstSource: "/data/a.jsonl:7"))
        }
        _ = try await queue.withLoad(source: "/data/b.jsonl") { (load: LoadTransaction) throws in
            #expect(try load.add(row("x", source: "/data/b.jsonl:1", hash: "2")) == .conflict(source: "/data/a.jsonl:7"))
            #expect(try load.add(row("y", source: "/data/b.jsonl:2", hash: "2")) == .conflict(source: "/data/a.jsonl:notes"))
        }
    }
}
