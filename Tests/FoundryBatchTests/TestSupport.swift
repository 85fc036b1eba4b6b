import Foundation
import GRDB
import Testing
import FoundryTestSupport
@testable import FoundryBatch

extension TemporaryDirectory {
    /// The JSON lines of `name`, parsed with the project's own parser.
    func jsonLines(_ name: String) -> [JSONValue] {
        read(name).split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
    }
}

/// The queue implementations the queue suite (and a few others) run against.
enum QueueKind: String, CaseIterable, Sendable {
    case sqlite, memory
}

/// A job file in a temporary folder, with its queue.
struct Fixture: Sendable {
    let directory = TemporaryDirectory()
    let job: JobFile
    let queue: any RowQueue

    init(yaml extra: String = "", name: String = "test", queue kind: QueueKind = .sqlite) throws {
        let text = """
            name: \(name)
            input: in.jsonl
            endpoint: emulator
            \(extra.hasPrefix("deployment:") || extra.contains("\ndeployment:") ? "" : "deployment: gpt-5-mini")
            \(extra)
            """
        let path = directory.write("job.yaml", text)
        job = try JobFile.load(path: path)
        switch kind {
        case .sqlite: queue = try SQLiteQueue(path: directory.file("state.sqlite"), jobName: job.name)
        case .memory: queue = MemoryQueue()
        }
    }

    /// The SQLite queue's pool, for tests that read the tables a user can query.
    var pool: DatabasePool {
        get throws { try #require(queue as? SQLiteQueue, "this test needs the SQLite queue").pool }
    }

    func load(_ text: String, file: String = "in.jsonl", skipInvalid: Bool = false) async throws -> FileLoadReport {
        let path = directory.write(file, text)
        return try await Loader(job: job, queue: queue).load(files: [path], skipInvalid: skipInvalid, rejectsPath: directory.file("rejects.jsonl"))[0]
    }

    /// The job's session over this fixture's queue, with the command line's limits.
    func session(concurrency: Int? = nil, maxAttempts: Int? = nil) throws -> JobSession {
        JobSession(settings: try JobSettings.resolve(job: job, overrides: JobOverrides(concurrency: concurrency, maxAttempts: maxAttempts)), queue: queue)
    }

    func total() async throws -> Int { try await queue.counts().job.total }
}
