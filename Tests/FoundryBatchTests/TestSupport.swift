import Foundation
import FoundryTestSupport
@testable import FoundryBatch

extension TemporaryDirectory {
    /// The JSON lines of `name`, parsed with the project's own parser.
    func jsonLines(_ name: String) -> [JSONValue] {
        read(name).split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
    }
}

/// A job file in a temporary folder, with its queue.
struct Fixture: Sendable {
    let directory = TemporaryDirectory()
    let job: JobFile
    let queue: SQLiteQueue

    init(yaml extra: String = "", name: String = "test") throws {
        let text = """
            name: \(name)
            input: in.jsonl
            endpoint: emulator
            \(extra.hasPrefix("deployment:") || extra.contains("\ndeployment:") ? "" : "deployment: gpt-5-mini")
            \(extra)
            """
        let path = directory.write("job.yaml", text)
        job = try JobFile.load(path: path)
        queue = try SQLiteQueue(path: directory.file("state.sqlite"), jobName: job.name)
    }

    func load(_ text: String, file: String = "in.jsonl", skipInvalid: Bool = false) throws -> FileLoadReport {
        let path = directory.write(file, text)
        return try Loader(job: job, queue: queue).load(files: [path], skipInvalid: skipInvalid, rejectsPath: directory.file("rejects.jsonl"))[0]
    }

    func total() async throws -> Int { try await queue.counts().job.total }
}
