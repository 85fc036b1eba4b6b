import Foundation
import FoundryTestSupport
import GRDB
import Testing
@testable import FoundryBatch

/// Odd job files and input lines: absurd numbers, control characters, one file in two
/// roles, very long lines. Each is refused with the place to fix, or handled in bounded
/// time and memory; none traps.
@Suite struct HardeningInputTests {
    func loadError(_ fixture: Fixture, _ text: String, file: String = "in.jsonl") async -> String? {
        do {
            _ = try await fixture.load(text, file: file)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func jobError(_ yaml: String) -> String? {
        let directory = TemporaryDirectory()
        do {
            _ = try JobFile.parse(yaml: "name: t\ninput: in.jsonl\nendpoint: emulator\n" + yaml, path: directory.file("job.yaml"), displayPath: "job.yaml")
            return nil
        } catch {
            return error.description
        }
    }

    @Test func anAbsurdTokenCapInALineIsAnErrorWithItsPlace() async throws {
        let fixture = try await Fixture()
        let message = await loadError(fixture, #"{"id": "a", "prompt": "hi"}"# + "\n" + #"{"custom_id": "b", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [], "max_tokens": 9223372036854775807}}"#)
        #expect(message?.contains("in.jsonl:2:") == true)
        #expect(message?.contains("max_tokens") == true)
        let fraction = await loadError(fixture, #"{"custom_id": "c", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [], "max_tokens": 1.5}}"#)
        #expect(fraction?.contains("not a whole number") == true)
        #expect(try await fixture.queue.report().pendingRows == 0, "nothing of the file was loaded")
    }

    @Test func hugeButValidTokenCapsDoNotOverflowTheEstimate() {
        let body = JSONValue.object([("messages", .array([])), ("max_tokens", .int(RequestBuilder.maxTokenCap))])
        #expect(RequestBuilder.estimatedTokens(body).total == RequestBuilder.maxTokenCap)
    }

    @Test(arguments: [
        ("request: {max_tokens: 5000000000000000000}", "request"),
        ("limits: {timeout: 1e300}", "limits.timeout"),
        ("limits: {timeout: .inf}", "limits.timeout"),
        ("limits: {max_retry_wait: 1e300}", "limits.max_retry_wait"),
        ("limits: {concurrency: 100000000}", "limits.concurrency"),
        ("emulator: {token_ttl: 1e300}", "emulator.token_ttl"),
        ("prices: {prompt_per_1k: .nan}", "prices.prompt_per_1k"),
        ("request: {stream: true}", "request"),
        ("variants: [{name: a, request: {stream: true}}]", "variants[0].request"),
    ])
    func absurdJobFileValuesAreRefusedWithTheirKey(yaml: String, key: String) {
        let message = jobError(yaml)
        #expect(message?.contains("job.yaml:") == true, "names the file and line: \(message ?? "accepted")")
        #expect(message?.contains(key) == true)
    }

    @Test func aStreamingBatchLineIsRefusedAtLoad() async throws {
        let fixture = try await Fixture()
        let message = await loadError(fixture, #"{"custom_id": "s", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [], "stream": true}}"#)
        #expect(message?.contains("in.jsonl:1:") == true)
        #expect(message?.contains("stream") == true)
    }

    @Test func idsWithControlCharactersAreRefused() async throws {
        let fixture = try await Fixture()
        let message = await loadError(fixture, #"{"id": "n\u0000A", "prompt": "hi"}"#)
        #expect(message?.contains("in.jsonl:1:") == true)
        #expect(message?.contains("control characters") == true)
        let model = await loadError(fixture, #"{"custom_id": "x", "url": "/v1/chat/completions", "body": {"model": "m\u0000", "messages": []}}"#)
        #expect(model?.contains("model name") == true)
    }

    @Test func defaultIDsUseThePathFromTheJobsFolder() async throws {
        let fixture = try await Fixture()
        let line = #"{"prompt": "same line in both files"}"#
        _ = try await fixture.load(line, file: "a/data.jsonl")
        _ = try await fixture.load(line, file: "b/data.jsonl")
        let ids = try await fixture.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM rows ORDER BY seq") }
        #expect(ids == ["a/data.jsonl:1", "b/data.jsonl:1"], "two rows, not one merged silently")
        #expect(FilePaths.relative("/x/in/data.jsonl", to: "/x/jobs") == "../in/data.jsonl")
        #expect(FilePaths.relative("/x/jobs/data.jsonl", to: "/x/jobs") == "data.jsonl")
    }

    /// Opens `path`'s session and closes it again, as a command does.
    func open(_ path: String, overrides: JobOverrides = JobOverrides()) async throws {
        try await JobSession.with(job: JobFile.load(path: path), overrides: overrides) { _ in }
    }

    @Test func oneFileInTwoRolesIsRefused() async throws {
        let directory = TemporaryDirectory()
        let path = directory.write("job.yaml", "name: t\ninput: in.jsonl\nendpoint: emulator\noutput: out/r.jsonl\nerrors: out/r.jsonl\n")
        await #expect(throws: UsageError.self) { try await open(path) }
        let inputAsOutput = directory.write("job2.yaml", "name: t\ninput: out/r.jsonl\nendpoint: emulator\noutput: out/r.jsonl\n")
        do {
            try await open(inputAsOutput)
            Issue.record("an input equal to the output was accepted")
        } catch let error as UsageError {
            #expect(error.description.contains("input") && error.description.contains("output"))
        }
    }

    @Test func twoWritersOfOneFileNeverShareATemporaryName() throws {
        let directory = TemporaryDirectory()
        let first = try AtomicFileWriter(path: directory.file("same.jsonl"))
        let second = try AtomicFileWriter(path: directory.file("same.jsonl"))
        #expect(first.temporaryPath != second.temporaryPath)
        first.write(Array("first\n".utf8))
        second.write(Array("second\n".utf8))
        try first.commit()
        try second.commit()
        #expect(directory.read("same.jsonl") == "second\n", "each file is whole; the last rename wins")
    }

    @Test func anOutputFolderThatCannotBeMadeIsFoundBeforeSending() throws {
        let directory = TemporaryDirectory()
        directory.write("blocker", "a file where a folder should be")
        let paths = JobPaths(
            inputs: [], output: directory.file("blocker/out.jsonl"), errors: directory.file("blocker/out.errors.jsonl"),
            state: directory.file("s.sqlite"), rejects: directory.file("r.jsonl"), date: "2026-01-01"
        )
        #expect(throws: StorageError.self) { try paths.checkWritable() }
        #expect(StorageError(path: "p", message: "m").exitStatus == .badInput)
        #expect(StorageError(path: "p", message: "m").afterSending().exitStatus == .storageFailed)
    }

    @Test func aLongLineIsScannedOnce() throws {
        let directory = TemporaryDirectory()
        let long = String(repeating: "x", count: 5 * LineReader.chunkSize + 17)
        let path = directory.write("long.jsonl", long + "\nshort\n")
        var reader = try LineReader(path: path)
        #expect(reader.next()?.count == long.utf8.count)
        #expect(reader.next()?.count == 5)
        #expect(reader.next() == nil)
        // Rescanning from the line's start after each 1 MiB chunk examined 15 MiB here.
        #expect(reader.examined <= long.utf8.count + 16)
    }

    @Test func rejectsAreWrittenAsTheyAreFound() async throws {
        let fixture = try await Fixture()
        let bad = (1...2000).map { "not json \($0) " + String(repeating: "y", count: 200) }.joined(separator: "\n")
        let report = try await fixture.load(bad + "\n{\"id\": \"ok\", \"prompt\": \"fine\"}", skipInvalid: true)
        #expect(report.rejected == 2000 && report.inserted == 1)
        let rejects = fixture.directory.jsonLines("rejects.jsonl")
        #expect(rejects.count == 2000)
        #expect(rejects.last?["source"]?.stringValue?.hasSuffix("in.jsonl:2000") == true)
    }

    // MARK: Third review

    @Test func aSimpleLineMayCarryURLBodyAndCustomIDAsMetadata() async throws {
        let fixture = try await Fixture()
        let report = try await fixture.load(
            #"{"id": "x", "prompt": "hi", "url": "https://example.com/a", "body": "article"}"# + "\n" + #"{"id": "y", "prompt": "hi", "custom_id": "abc"}"#
        )
        #expect(report.inserted == 2)
    }

    @Test func aDailyOutputNeedsADailyState() {
        #expect(jobError("output: out/r-{date}.jsonl")?.contains("state:") == true)
        #expect(jobError("output: out/r-{date}.jsonl\nstate: s-{date}.sqlite") == nil)
    }

    @Test func theJobFileOrAFolderIsNeverAnOutput() async throws {
        let directory = TemporaryDirectory()
        let path = directory.write("job.yaml", "name: t\ninput: in.jsonl\nendpoint: emulator\n")
        await #expect(throws: UsageError.self) { try await open(path, overrides: JobOverrides(output: path)) }
        try FileManager.default.createDirectory(atPath: directory.file("out/t.jsonl"), withIntermediateDirectories: true)
        await #expect(throws: UsageError.self) { try await open(path) }
    }

    @Test func anEmulatorEndpointRefusesAuthNone() async throws {
        let fixture = try await Fixture(yaml: "auth: none")
        await #expect(throws: UsageError.self) { try await ServiceSession.with(job: fixture.job, concurrency: 1) { _ in 0 } }
    }

    @Test func leftoversOfKilledWritersAreSweptAfterAnHour() throws {
        let directory = TemporaryDirectory()
        let old = directory.write(".r.jsonl.ABC123", "half a file")
        let fresh = directory.write(".r.jsonl.DEF456", "another writer at work")
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: old)
        let writer = try AtomicFileWriter(path: directory.file("r.jsonl"))
        try writer.commit()
        #expect(!FileManager.default.fileExists(atPath: old))
        #expect(FileManager.default.fileExists(atPath: fresh))
    }
}
