import FoundryEmulator
import Foundation
import FoundryTestSupport
import Testing

/// `check` before a run, structured outputs validated and retried, and truncated answers
/// counted or failed: through the built binary against emulators.
@Suite(.serialized, .timeLimit(.minutes(3))) struct OutputChecksTests {
    static let key = "e2e-check-key-never-printed"

    func configuration(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
        EmulatorConfiguration.forTests(secret: "e2e-check-secret", apiKeys: [Self.key], change)
    }

    static let schema = #"{"type":"object","properties":{"label":{"type":"string","enum":["positive","negative"]},"score":{"type":"integer","minimum":0,"maximum":10}},"required":["label","score"],"additionalProperties":false}"#

    /// A job of `rows` rows asking for the schema above, against `emulator`.
    func structuredJob(_ emulator: Emulator, limits: String) -> String {
        """
        name: structured
        input: in.jsonl
        endpoint: \(emulator.baseURL)
        deployment: gpt-5-mini
        auth: api-key
        request:
          max_tokens: 200
          response_format: {type: json_schema, json_schema: {name: sentiment, strict: true, schema: \(Self.schema)}}
        limits: \(limits)
        """
    }

    func prompts(_ count: Int) -> String {
        (1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"Review \($0)\"}" }.joined(separator: "\n") + "\n"
    }

    @Test func checkNamesAMissingDeploymentARejectedKeyAndSaysOkForTheRest() async throws {
        try await Emulator.withRunning(configuration { $0.deployments = ["gpt-4o"] }) { lacking in
            try await Emulator.withRunning(configuration()) { denied in
                try await Emulator.withRunning(configuration()) { fine in
                    let cli = CLI(environment: ["KEY_OK": Self.key, "KEY_WRONG": "not-the-key"])
                    let job = """
                        name: checked
                        input: in.jsonl
                        deployment: gpt-5-mini
                        auth: api-key
                        targets:
                          - { name: lacking, endpoint: "\(lacking.baseURL)", api_key_env: KEY_OK }
                          - { name: denied, endpoint: "\(denied.baseURL)", api_key_env: KEY_WRONG }
                          - { name: fine, endpoint: "\(fine.baseURL)", api_key_env: KEY_OK }
                        """
                    cli.write("job.yaml", job)
                    cli.write("in.jsonl", prompts(3))
                    let result = try await cli.run("check", "job.yaml")
                    #expect(result.status == 3, "\(result.stdout)\(result.stderr)")
                    let lines = result.stdout.split(separator: "\n").map(String.init)
                    let lackingLine = lines.first { $0.contains("lacking") } ?? ""
                    #expect(lackingLine.hasPrefix("FAIL") && lackingLine.contains("not on") && lackingLine.contains("gpt-4o"), "\(result.stdout)")
                    let deniedLine = lines.first { $0.contains("denied") } ?? ""
                    #expect(deniedLine.hasPrefix("FAIL") && deniedLine.contains("rejected"), "\(result.stdout)")
                    #expect(result.stdout.contains("KEY_WRONG"), "the fix names the secret to check")
                    #expect(lines.first { $0.contains("fine") }?.hasPrefix("ok") == true, "\(result.stdout)")
                    #expect(!result.stdout.contains(Self.key) && !result.stdout.contains("not-the-key"))
                    #expect(lacking.stats.byRoute["chat"]?.values.reduce(0, +) == 1, "probed once; the listing says what is there")
                    let json = try await cli.run("check", "job.yaml", "--json")
                    #expect(json.json["ok"] as? Bool == false)
                    #expect((json.json["checks"] as? [[String: Any]])?.count == 3)
                    #expect(!FileManager.default.fileExists(atPath: cli.path("out/checked.jsonl")), "check runs nothing")
                }
            }
        }
    }

    @Test func checkOfAReadyJobExitsZeroWithOneRequestPerDeployment() async throws {
        try await Emulator.withRunning(configuration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write(
                "job.yaml",
                """
                name: ready
                input: in.jsonl
                endpoint: \(emulator.baseURL)
                deployment: gpt-5-mini
                auth: api-key
                variants:
                  - { name: mini, deployment: gpt-5-mini }
                  - { name: large, deployment: gpt-4.1 }
                  - { name: mini-hot, deployment: gpt-5-mini, request: { temperature: 1 } }
                """
            )
            cli.write("in.jsonl", prompts(50))
            let result = try await cli.run("check", "job.yaml")
            #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.split(separator: "\n").filter { $0.hasPrefix("ok") }.count == 2)
            #expect(emulator.stats.byRoute["chat"]?.values.reduce(0, +) == 2, "one request per deployment")
        }
    }

    @Test func checkReadsTheModelsOfInputLinesAndChecksTheBatchDeployment() async throws {
        try await Emulator.withRunning(configuration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            let base = "input: in.jsonl\nendpoint: \(emulator.baseURL)\nauth: api-key\n"
            cli.write("lines.yaml", "name: lines\n" + base)
            cli.write("in.jsonl", #"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "nosuchmodel", "messages": [{"role": "user", "content": "x"}]}}"# + "\n")
            let lines = try await cli.run("check", "lines.yaml")
            #expect(lines.status == 3, "\(lines.stdout)")
            #expect(lines.stdout.contains("FAIL") && lines.stdout.contains("nosuchmodel"), "\(lines.stdout)")
            cli.write("in.jsonl", prompts(3))
            cli.write("batch.yaml", "name: batch\ndeployment: gpt-5-mini\nengine: batch\nbatch: {deployment: nosuch-batch}\n" + base)
            let online = emulator.stats.byRoute["chat"]
            let batch = try await cli.run("check", "batch.yaml")
            #expect(batch.status == 3, "\(batch.stdout)")
            #expect(batch.stdout.contains("batch: deployment 'nosuch-batch' is not on"), "\(batch.stdout)")
            #expect(emulator.stats.byRoute["chat"] == online, "a batch job's check sends no online request")
            cli.write("ready.yaml", "name: ready\ndeployment: gpt-5-mini\nengine: batch\n" + base)
            let ready = try await cli.run("check", "ready.yaml")
            #expect(ready.status == 0, "\(ready.stdout)")
            #expect(ready.stdout.contains("the Batch API answers"), "\(ready.stdout)")
        }
    }

    @Test func invalidFirstAnswersAreTriedAgainUntilEveryRowIsValid() async throws {
        try await Emulator.withRunning(configuration { $0.outputInvalidRate = 0.2 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", structuredJob(emulator, limits: "{concurrency: 8, max_output_retries: 5}"))
            cli.write("in.jsonl", prompts(100))
            let run = try await cli.run("run", "job.yaml", "--no-progress", "--json")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(emulator.stats.outputInvalid > 0, "some first answers were broken")
            let lines = cli.lines("out/structured.jsonl")
            #expect(lines.count == 100)
            for line in lines {
                let body = (line["response"] as? [String: Any])?["body"] as? [String: Any]
                let content = ((body?["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String ?? ""
                let answer = try? JSONSerialization.jsonObject(with: Data(content.utf8)) as? [String: Any]
                #expect(["positive", "negative"].contains(answer?["label"] as? String ?? ""), "\(content)")
            }
        }
    }

    @Test func theBatchEngineChecksStructuredOutputsToo() async throws {
        try await Emulator.withRunning(configuration { $0.outputInvalidRate = 0.3; $0.batchSeconds = 0.3 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", structuredJob(emulator, limits: "{max_output_retries: 8, max_attempts: 10}") + "\nengine: batch\nbatch: {poll_interval: 0.1}\n")
            cli.write("in.jsonl", prompts(40))
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(emulator.stats.outputInvalid > 0 && emulator.stats.batchesCreated > 1, "invalid answers went in a later batch")
            #expect(emulator.stats.requests == 0)
            #expect(cli.lines("out/structured.jsonl").count == 40)
        }
    }

    @Test func withNoOutputRetriesEveryInvalidAnswerFailsWithItsReason() async throws {
        try await Emulator.withRunning(configuration { $0.outputInvalidRate = 1 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", structuredJob(emulator, limits: "{concurrency: 4, max_output_retries: 0}"))
            cli.write("in.jsonl", prompts(10))
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 1, "\(run.stderr)")
            let errors = cli.lines("out/structured.errors.jsonl")
            #expect(errors.count == 10)
            let error = errors.first?["error"] as? [String: Any]
            #expect(error?["code"] as? String == "invalid_output")
            let message = error?["message"] as? String ?? ""
            #expect(message.contains("not JSON"), "\(message)")
            #expect(errors.first?["response"] != nil, "the answer is kept")
            #expect(emulator.stats.requests == 10, "no retry")
        }
    }

    @Test func truncatedAnswersAreCountedOrFailedAsTheJobSays() async throws {
        try await Emulator.withRunning(configuration { $0.outputTruncatedRate = 0.3 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            let base = "name: cut\ninput: in.jsonl\nendpoint: \(emulator.baseURL)\ndeployment: gpt-5-mini\nauth: api-key\n"
            cli.write("job.yaml", base + "limits: {concurrency: 4}\n")
            cli.write("in.jsonl", prompts(60))
            let kept = try await cli.run("run", "job.yaml", "--no-progress", "--json")
            #expect(kept.status == 0, "\(kept.stderr)")
            let truncated = kept.json["truncated"] as? Int ?? 0
            #expect(truncated > 0 && truncated == emulator.stats.outputTruncated, "\(kept.stdout)")
            let status = try await cli.run("status", "job.yaml", "--json")
            #expect(status.json["truncated"] as? Int == truncated)
            // The same rows again, failing what is cut off.
            cli.write("fail.yaml", base.replacingOccurrences(of: "name: cut", with: "name: cut-fail") + "limits: {concurrency: 4, truncated: fail}\n")
            let failed = try await cli.run("run", "fail.yaml", "--no-progress", "--json")
            #expect(failed.status == 1)
            let errors = cli.lines("out/cut-fail.errors.jsonl")
            #expect(!errors.isEmpty && errors.allSatisfy { ($0["error"] as? [String: Any])?["code"] as? String == "truncated" })
            #expect(try await cli.run("retry", "fail.yaml", "--code", "truncated").status == 0)
            #expect((try await cli.run("status", "fail.yaml", "--json")).json["pending"] as? Int == errors.count)
        }
    }
}
