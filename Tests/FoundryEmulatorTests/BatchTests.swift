import Foundation
import NIOHTTP1
import Testing
@testable import FoundryEmulator

/// The emulated Batch API: files and batches on both path styles, as Azure documents them.
@Suite struct BatchTests {
    let key = [("api-key", "test-key")]

    func line(_ id: String, _ prompt: String, model: String = "gpt-5-mini", url: String = "/chat/completions") -> String {
        let body = try! JSONSerialization.data(withJSONObject: chat(prompt, model: model))
        return #"{"custom_id":"\#(id)","method":"POST","url":"\#(url)","body":\#(String(decoding: body, as: UTF8.self))}"#
    }

    /// Uploads `text` as a batch file through `base` (`/openai/v1` or `/openai` with `query`).
    func upload(_ emulator: Emulator, _ text: String, base: String = "/openai/v1", query: String = "") async throws -> Wire.Answer {
        let boundary = "b-\(UUID().uuidString)"
        let body = "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n\(text)\r\n--\(boundary)--\r\n"
        return try await emulator.wire.send(
            .POST, "\(base)/files\(query)", headers: key + [("Content-Type", "multipart/form-data; boundary=\(boundary)")], body: Data(body.utf8)
        )
    }

    func create(_ emulator: Emulator, file: String, base: String = "/openai/v1", query: String = "") async throws -> Wire.Answer {
        try await emulator.wire.json("\(base)/batches\(query)", ["input_file_id": file, "endpoint": "/chat/completions", "completion_window": "24h"], headers: key)
    }

    /// Polls until the batch ends (at most 10 s).
    func ended(_ emulator: Emulator, _ id: String, base: String = "/openai/v1", query: String = "") async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let answer = try await emulator.wire.send(.GET, "\(base)/batches/\(id)\(query)", headers: key)
            let status = (answer.json["status"] as? String ?? "").lowercased()
            if ["completed", "failed", "expired", "cancelled"].contains(status) { return answer.json }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("batch \(id) did not end")
        return [:]
    }

    func content(_ emulator: Emulator, _ file: String, base: String = "/openai/v1", query: String = "") async throws -> [[String: Any]] {
        let answer = try await emulator.wire.send(.GET, "\(base)/files/\(file)/content\(query)", headers: key)
        return String(decoding: answer.body, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    @Test(arguments: [("/openai/v1", ""), ("/openai", "?api-version=2024-10-21")])
    func aBatchRunsOnBothPathStylesWithTheOnlineAnswers(_ base: String, _ query: String) async throws {
        try await Emulator.withRunning(.testing { $0.batchSeconds = 0.3 }) { emulator in
            let file = try await upload(emulator, [line("a", "First"), line("b", "Second")].joined(separator: "\n"), base: base, query: query)
            #expect((200...201).contains(file.status))
            let fileID = try #require(file.json["id"] as? String)
            let created = try await create(emulator, file: fileID, base: base, query: query)
            #expect((200...201).contains(created.status))
            let id = try #require(created.json["id"] as? String)
            let batch = try await ended(emulator, id, base: base, query: query)
            #expect(batch["status"] as? String == "completed")
            #expect((batch["request_counts"] as? [String: Int])?["completed"] == 2)
            let lines = try await content(emulator, try #require(batch["output_file_id"] as? String), base: base, query: query)
            #expect(Set(lines.compactMap { $0["custom_id"] as? String }) == ["a", "b"])
            let answer = lines.first { $0["custom_id"] as? String == "a" }
            let response = try #require(answer?["response"] as? [String: Any])
            #expect(response["status_code"] as? Int == 200)
            let body = try #require(response["body"] as? [String: Any])
            let message = ((body["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
            #expect(message == EmulatorAnswer.text(for: "First"))
            #expect(emulator.stats.requests == 0 && emulator.stats.batchesCreated == 1 && emulator.stats.batchLinesAnswered == 2)
        }
    }

    @Test func theApiVersionStyleNeedsItsVersionAndThePreviewSpellsStatusAsAzureDidThen() async throws {
        try await Emulator.withRunning(.testing { $0.batchSeconds = 5 }) { emulator in
            #expect(try await emulator.wire.send(.GET, "/openai/batches", headers: key).status == 404)
            let query = "?api-version=2024-07-01-preview"
            let file = try await upload(emulator, line("a", "x"), base: "/openai", query: query)
            let created = try await create(emulator, file: file.json["id"] as? String ?? "", base: "/openai", query: query)
            #expect(created.json["status"] as? String == "Validating")
            #expect(created.json["created_at"] is String, "ISO 8601 in the preview")
        }
    }

    @Test func aMixedModelFileOrABOMFailsValidationNamingTheLine() async throws {
        try await Emulator.withRunning(.testing { $0.batchSeconds = 0.2 }) { emulator in
            let mixed = try await upload(emulator, [line("a", "x"), line("b", "y", model: "gpt-4.1")].joined(separator: "\n"))
            let first = try await create(emulator, file: mixed.json["id"] as? String ?? "")
            let failed = try await ended(emulator, first.json["id"] as? String ?? "")
            #expect(failed["status"] as? String == "failed")
            let errors = ((failed["errors"] as? [String: Any])?["data"] as? [[String: Any]]) ?? []
            #expect(errors.first?["code"] as? String == "model_mismatch")
            #expect(errors.first?["line"] as? Int == 2)
            let bom = try await upload(emulator, "\u{FEFF}" + line("a", "x"))
            let second = try await create(emulator, file: bom.json["id"] as? String ?? "")
            let refused = try await ended(emulator, second.json["id"] as? String ?? "")
            #expect(refused["status"] as? String == "failed")
            #expect(((refused["errors"] as? [String: Any])?["data"] as? [[String: Any]])?.first?["line"] as? Int == 1)
        }
    }

    @Test func theKnobsRefuseCreatesExpireHalfDoneAndCancelKeepsFinishedWork() async throws {
        try await Emulator.withRunning(.testing { $0.batchSeconds = 0.4; $0.batchRefuseCreates = 1; $0.batchExpireFirst = 1 }) { emulator in
            let lines = (1...10).map { line("r\($0)", "Prompt \($0)") }.joined(separator: "\n")
            let file = try await upload(emulator, lines)
            let fileID = file.json["id"] as? String ?? ""
            let refused = try await create(emulator, file: fileID)
            #expect(refused.status == 400)
            #expect(refused.error["code"] as? String == "token_limit_exceeded")
            let expiring = try await create(emulator, file: fileID)
            let expired = try await ended(emulator, expiring.json["id"] as? String ?? "")
            #expect(expired["status"] as? String == "expired")
            let done = try await content(emulator, expired["output_file_id"] as? String ?? "")
            let unrun = try await content(emulator, expired["error_file_id"] as? String ?? "")
            #expect(done.count == 5 && unrun.count == 5)
            #expect(unrun.allSatisfy { ($0["error"] as? [String: Any])?["code"] as? String == "batch_expired" })
            // A slow batch cancelled at once: nothing finished, every line unrun.
            try await Emulator.withRunning(.testing { $0.batchSeconds = 60 }) { slow in
                let file = try await upload(slow, lines)
                let created = try await create(slow, file: file.json["id"] as? String ?? "")
                let id = created.json["id"] as? String ?? ""
                let cancelling = try await slow.wire.send(.POST, "/openai/v1/batches/\(id)/cancel", headers: key)
                #expect(cancelling.json["status"] as? String == "cancelling")
                let cancelled = try await ended(slow, id)
                #expect(cancelled["status"] as? String == "cancelled")
                #expect(try await content(slow, cancelled["output_file_id"] as? String ?? "").isEmpty)
            }
        }
    }
}
