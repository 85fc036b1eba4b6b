import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

@Suite struct ExporterTests {
    @Test(arguments: QueueKind.allCases) func writesResultsAndErrorsInInputOrderInTheBatchShape(_ kind: QueueKind) async throws {
        let fixture = try await Fixture(queue: kind)
        _ = try await fixture.load("{\"id\": \"a\", \"prompt\": \"1\", \"tag\": \"x\"}\n{\"id\": \"b\", \"prompt\": \"2\"}\n{\"id\": \"c\", \"prompt\": \"3\"}\n{\"id\": \"d\", \"prompt\": \"4\"}\n")
        let now = Date()
        let rows = try await fixture.queue.claim(owner: "A", limit: 3, leaseUntil: now + 60, now: now)
        let ok = ResponseRecord(statusCode: 200, requestID: "r-1", clientRequestID: "c-1", body: #"{"choices":[{"message":{"content":"hi"}}]}"#, latencyMs: 1)
        let filtered = ResponseRecord(statusCode: 400, requestID: "r-2", clientRequestID: "c-2", body: #"{"error":{"code":"content_filter"}}"#, latencyMs: 1)
        // Complete out of order: the files still follow input order.
        try await fixture.queue.complete(
            [
                Completion(seq: rows[2].seq, owner: "A", outcome: .succeeded(ok)),
                Completion(seq: rows[1].seq, owner: "A", outcome: .failed(error: RowError(code: "content_filter", message: "filtered", statusCode: 400), response: filtered)),
                Completion(seq: rows[0].seq, owner: "A", outcome: .succeeded(ok)),
            ],
            now: now
        )
        let report = try await Exporter(queue: fixture.queue).export(output: fixture.directory.file("out/r.jsonl"), errors: fixture.directory.file("out/r.errors.jsonl"))
        #expect(report.succeeded == 2 && report.failed == 1)
        let results = fixture.directory.jsonLines("out/r.jsonl")
        #expect(results.map { $0["custom_id"]?.stringValue } == ["a", "c"])
        #expect(results[0]["id"]?.stringValue == "batch_req_c-1")
        #expect(results[0]["response"]?["status_code"]?.intValue == 200)
        #expect(results[0]["response"]?["request_id"]?.stringValue == "r-1")
        #expect(results[0]["response"]?["body"]?["choices"] != nil)
        #expect(results[0]["error"] == .null)
        #expect(results[0]["metadata"]?["tag"]?.stringValue == "x")
        let errors = fixture.directory.jsonLines("out/r.errors.jsonl")
        #expect(errors.count == 1)
        #expect(errors[0]["custom_id"]?.stringValue == "b")
        #expect(errors[0]["error"]?["code"]?.stringValue == "content_filter")
        #expect(errors[0]["error"]?["attempts"]?.intValue == 1)
        #expect(errors[0]["response"]?["status_code"]?.intValue == 400)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fixture.directory.file("out")).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty)
    }

    @Test func anUncommittedWriterLeavesTheOldFileWhole() throws {
        let directory = TemporaryDirectory()
        let path = directory.write("out.jsonl", "old\n")
        do {
            let writer = try AtomicFileWriter(path: path)
            writer.write(Array("new\n".utf8))
        }
        #expect(directory.read("out.jsonl") == "old\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["out.jsonl"])
    }
}
