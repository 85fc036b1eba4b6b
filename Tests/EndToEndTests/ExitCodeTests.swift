import FoundryEmulator
import Foundation
import FoundryTestSupport
import Testing

/// Exit codes and `--json` on the paths where a run cannot start or cannot finish writing.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ExitCodeTests {
    static let key = "exit-code-test-key"

    func job(_ base: String, extra: String = "") -> String {
        "name: e2e\ninput: in.jsonl\nendpoint: \(base)\ndeployment: gpt-5-mini\nauth: api-key\nlimits: {concurrency: 2, timeout: 10}\n\(extra)\n"
    }

    func configuration() -> EmulatorConfiguration {
        EmulatorConfiguration.forTests(secret: "unused", apiKeys: [Self.key])
    }

    @Test func aMissingCredentialStillPrintsOneJSONObject() async throws {
        let cli = CLI()
        cli.write("job.yaml", job("https://my-foundry.openai.azure.com").replacingOccurrences(of: "auth: api-key", with: "auth: client-secret"))
        cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n")
        let result = try await cli.run("run", "job.yaml", "--json", "--no-progress")
        #expect(result.status == 3, "\(result.stderr)")
        #expect(result.json["job"] as? String == "e2e")
        #expect(result.json["exit_code"] as? Int == 3)
        #expect(result.json["pending"] as? Int == 1)
        #expect((result.json["error"] as? String)?.contains("AZURE_CLIENT_SECRET") == true)
    }

    @Test func badInputAfterTheJobFileWasReadPrintsOneJSONObject() async throws {
        let cli = CLI()
        cli.write("job.yaml", job("https://my-foundry.openai.azure.com"))
        let result = try await cli.run("run", "job.yaml", "--json", "--no-progress")
        #expect(result.status == 2)
        #expect(result.json["exit_code"] as? Int == 2)
        #expect((result.json["error"] as? String)?.contains("in.jsonl") == true)
    }

    @Test func anOutputFolderThatCannotBeWrittenStopsBeforeSending() async throws {
        try await Emulator.withRunning(configuration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("blocker", "a file where the output folder should be")
            cli.write("job.yaml", job(emulator.baseURL, extra: "output: blocker/results.jsonl"))
            cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n")
            let result = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("blocker"))
            #expect(emulator.stats.requests == 0, "nothing was sent")
        }
    }

    @Test func aStorageFailureAfterSendingHasItsOwnCode() async throws {
        var slow = configuration()
        slow.latencyMs = 1500
        try await Emulator.withRunning(slow) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator.baseURL).replacingOccurrences(of: "concurrency: 2", with: "concurrency: 1"))
            cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n{\"id\": \"b\", \"prompt\": \"ho\"}\n")
            // The output folder is fine when the run starts, and gone (a file in its place)
            // by the time the answers are written out.
            let (process, out, err) = try cli.start(["run", "job.yaml", "--no-progress", "--json"])
            while emulator.stats.requests + emulator.stats.peakConcurrency == 0 { try await Task.sleep(for: .milliseconds(20)) }
            try FileManager.default.removeItem(atPath: cli.path("out"))
            cli.write("out", "a file where the output folder was")
            let result = try await CLI.finish(process, out, err)
            #expect(result.status == 4, "\(result.stderr)")
            #expect(result.json["exit_code"] as? Int == 4)
            #expect(result.json["requests"] as? Int == 2, "the summary still tells what was sent")
            #expect(result.stderr.contains("safe in the state database"))
            try FileManager.default.removeItem(atPath: cli.path("out"))
            let export = try await cli.run("export", "job.yaml")
            #expect(export.status == 0)
            #expect(cli.lines("out/e2e.jsonl").count == 2, "the answers were kept")
        }
    }

    @Test func anOutputThatIsAFolderIsRefusedBeforeSending() async throws {
        try await Emulator.withRunning(configuration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            try FileManager.default.createDirectory(atPath: cli.path("out/e2e.jsonl/inside"), withIntermediateDirectories: true)
            cli.write("job.yaml", job(emulator.baseURL))
            cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n")
            let result = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(result.status == 2, "\(result.stderr)")
            #expect(emulator.stats.requests == 0)
            let overwrite = try await cli.run("export", "job.yaml", "--output", "job.yaml")
            #expect(overwrite.status == 2, "the job file is never an output")
            #expect(cli.read("job.yaml").hasPrefix("name: e2e"))
        }
    }

    @Test func theJSONObjectNamesThisRunsFilesWhenTheStateCannotOpen() async throws {
        let cli = CLI()
        cli.write("job.yaml", job("https://my-foundry.openai.azure.com"))
        cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n")
        try FileManager.default.createDirectory(atPath: cli.path("sdir"), withIntermediateDirectories: true)
        let result = try await cli.run("run", "job.yaml", "--json", "--output", "elsewhere.jsonl", "--state", "sdir")
        #expect(result.status == 2)
        #expect((result.json["output"] as? String)?.hasSuffix("/elsewhere.jsonl") == true)
    }

    @Test func runSkipsInvalidLinesLikeLoad() async throws {
        try await Emulator.withRunning(configuration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator.baseURL))
            cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\nnot json\n")
            #expect(try await cli.run("run", "job.yaml", "--no-progress").status == 2, "strict by default")
            let result = try await cli.run("run", "job.yaml", "--no-progress", "--skip-invalid")
            #expect(result.status == 0, "\(result.stderr)")
            #expect(cli.lines("out/e2e.rejects.jsonl").count == 1)
            #expect(cli.lines("out/e2e.jsonl").count == 1)
        }
    }

    @Test func errorsEqualToOutputIsRefused() async throws {
        let cli = CLI()
        cli.write("job.yaml", job("https://my-foundry.openai.azure.com", extra: "output: out/r.jsonl\nerrors: out/r.jsonl"))
        cli.write("in.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n")
        let result = try await cli.run("run", "job.yaml", "--no-progress")
        #expect(result.status == 2)
        #expect(result.stderr.contains("output and errors are the same file"))
    }
}
