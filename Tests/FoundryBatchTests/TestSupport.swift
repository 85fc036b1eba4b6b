import Foundation
@testable import FoundryBatch

/// A temporary folder removed when the test ends.
final class TemporaryDirectory: Sendable {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "foundry-batch-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        write(name, bytes: Array(text.utf8))
    }

    @discardableResult
    func write(_ name: String, bytes: [UInt8]) -> String {
        let target = file(name)
        FileManager.default.createFile(atPath: target, contents: Data(bytes))
        return target
    }

    func read(_ name: String) -> String {
        (try? String(contentsOfFile: file(name), encoding: .utf8)) ?? ""
    }

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
