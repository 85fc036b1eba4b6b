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
///
/// PostgreSQL joins when `FOUNDRY_BATCH_TEST_POSTGRES` names a database (`.ci/postgres.sh`
/// starts one and prints it); CI sets `FOUNDRY_BATCH_REQUIRE_POSTGRES`, so there a missing
/// database fails the suite instead of leaving it out.
enum QueueKind: String, CaseIterable, Sendable {
    case sqlite, memory, postgres

    static var allCases: [QueueKind] {
        TestPostgres.url != nil || TestPostgres.required ? [.sqlite, .memory, .postgres] : [.sqlite, .memory]
    }
}

/// The test database, from the environment.
enum TestPostgres {
    static let environment = ProcessInfo.processInfo.environment
    static let url = environment["FOUNDRY_BATCH_TEST_POSTGRES"]
    static let required = environment["FOUNDRY_BATCH_REQUIRE_POSTGRES"] != nil

    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "FOUNDRY_BATCH_TEST_POSTGRES is not set: run eval \"$(.ci/postgres.sh)\" (as root) to start a test database"
        }
    }

    /// A new schema of the test database for one test, named so that nothing else uses it.
    ///
    /// - Parameters:
    ///   - schema: an existing test's schema, to open its queue a second time.
    ///   - port: another port of loopback to connect to (a proxy in front of the database).
    static func queue(jobName: String, patience: TimeInterval = 10, schema: String? = nil, port: Int? = nil) async throws -> PostgresQueue {
        guard let url else { throw Missing() }
        let schema = schema ?? "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20)
        var location = try PostgresLocation(url: url + (url.contains("?") ? "&" : "?") + "schema=\(schema)", jobName: jobName)
        if let port { location.port = port }
        return try await PostgresQueue.open(location, jobName: jobName, password: try location.password(), patience: patience)
    }
}

/// A job file in a temporary folder, with its queue.
struct Fixture: Sendable {
    let directory = TemporaryDirectory()
    let job: JobFile
    let queue: any RowQueue

    init(yaml extra: String = "", name: String = "test", queue kind: QueueKind = .sqlite) async throws {
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
        case .postgres: queue = try await TestPostgres.queue(jobName: job.name)
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
