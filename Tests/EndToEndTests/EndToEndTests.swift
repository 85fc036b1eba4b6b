import FoundryEmulator
import Foundation
import FoundryTestSupport
import GRDB
import Testing

/// The built binary, driven as cron or a user would drive it, against the emulator.
@Suite(.serialized, .timeLimit(.minutes(3))) struct EndToEndTests {
    static let key = "e2e-api-key-never-printed"
    static let secret = "e2e-client-secret-never-printed"

    func emulatorConfiguration(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
        EmulatorConfiguration.forTests(secret: Self.secret, apiKeys: [Self.key], change)
    }

    func job(_ emulator: Emulator, auth: String = "api-key", limits: String = "{concurrency: 8, timeout: 10}", extra: String = "") -> String {
        """
        name: e2e
        input: in.jsonl
        endpoint: \(emulator.baseURL)
        deployment: gpt-5-mini
        auth: \(auth)
        limits: \(limits)
        \(extra)
        """
    }

    func prompts(_ count: Int) -> String {
        (1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"Prompt \($0)\"}" }.joined(separator: "\n") + "\n"
    }

    @Test func theDemoJobRunsOutOfTheBoxAndASecondRunHasNothingToDo() async throws {
        let cli = CLI()
        try FileManager.default.createDirectory(atPath: cli.path("jobs"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: cli.path("samples"), withIntermediateDirectories: true)
        for file in ["jobs/demo.yaml", "samples/prompts.jsonl"] {
            try FileManager.default.copyItem(atPath: CLI.repository + "/" + file, toPath: cli.path(file))
        }
        let first = try await cli.run("run", "jobs/demo.yaml", "--json", "--no-progress")
        #expect(first.status == 1, "one demo prompt trips the content filter: \(first.stderr)")
        let summary = first.json
        for key in ["job", "total", "succeeded", "failed", "pending", "requests", "retries", "throttled", "token_requests",
                    "prompt_tokens", "completion_tokens", "elapsed_seconds", "output", "errors"] {
            #expect(summary[key] != nil, "--json lacks \(key)")
        }
        #expect(summary["succeeded"] as? Int == 39)
        #expect(summary["failed"] as? Int == 1)
        #expect((summary["token_requests"] as? Int ?? 0) >= 2, "the demo's short tokens are refreshed")
        #expect(cli.lines("out/demo.jsonl").count == 39)
        #expect(cli.lines("out/demo.errors.jsonl").first?["custom_id"] as? String == "filtered-01")
        let second = try await cli.run("run", "jobs/demo.yaml", "--json", "--no-progress")
        #expect(second.json["requests"] as? Int == 0)
        let status = try await cli.run("status", "jobs/demo.yaml", "--json")
        #expect(status.json["succeeded"] as? Int == 39)
    }

    @Test func loadStatusRetryExportWorkOnTheQueue() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator))
            cli.write("in.jsonl", prompts(5) + "{\"id\": \"x\", \"prompt\": \"BLOCKME\"}\n")
            #expect(try await cli.run("load", "job.yaml").status == 0)
            #expect(try await cli.run("load", "job.yaml").status == 0)
            let pending = try await cli.run("status", "job.yaml", "--json")
            #expect(pending.json["pending"] as? Int == 6)
            #expect(pending.json["total"] as? Int == 6)

            cli.write("bad.jsonl", "{\"id\": \"y\", \"prompt\": \"ok\"}\n{broken\n")
            let bad = try await cli.run("load", "job.yaml", "--input", "bad.jsonl")
            #expect(bad.status == 2)
            #expect(bad.stderr.contains("bad.jsonl:2:"))
            #expect(try await cli.run("status", "job.yaml", "--json").json["total"] as? Int == 6, "nothing half-loaded")

            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 1)
            let retry = try await cli.run("retry", "job.yaml", "--code", "content_filter")
            #expect(retry.stdout.contains("1 failed rows queued again"))
            emulator.update { $0.contentFilterPhrase = nil }
            let rerun = try await cli.run("run", "job.yaml", "--no-progress", "--json")
            #expect(rerun.status == 0)
            #expect(rerun.json["requests"] as? Int == 1)
            #expect(cli.lines("out/e2e.jsonl").count == 6)
            #expect(cli.read("out/e2e.errors.jsonl").isEmpty)
            let export = try await cli.run("export", "job.yaml", "--output", "copy.jsonl")
            #expect(export.status == 0)
            #expect(cli.lines("copy.jsonl").count == 6)
        }
    }

    @Test func badJobFilesAndMissingInputsExitTwoBeforeSendingAnything() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("typo.yaml", job(emulator, extra: "limitz: {}"))
            let typo = try await cli.run("run", "typo.yaml")
            #expect(typo.status == 2)
            #expect(typo.stderr.contains("typo.yaml:7: limitz: unknown key"))
            #expect(!typo.stderr.contains("Fatal error"), "no stack trace")
            cli.write("job.yaml", job(emulator))
            let missing = try await cli.run("run", "job.yaml")
            #expect(missing.status == 2)
            #expect(missing.stderr.contains("in.jsonl: cannot open the input: no such file"))
            let usage = try await cli.run("run", "job.yaml", "--concurrency", "0")
            #expect(usage.status == 2)
            #expect(emulator.stats.requests == 0)
        }
    }

    @Test func permissionDeniedExitsThreeAndARerunWithTheRoleFinishes() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.clients[0].hasRole = false }) { emulator in
            let cli = CLI(environment: [
                "AZURE_TENANT_ID": EmulatorConfiguration.demoTenantID, "AZURE_CLIENT_ID": EmulatorConfiguration.demoClientID,
                "AZURE_CLIENT_SECRET": Self.secret, "AZURE_AUTHORITY_HOST": emulator.baseURL,
            ])
            cli.write("job.yaml", job(emulator, auth: "client-secret"))
            cli.write("in.jsonl", prompts(30))
            let denied = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(denied.status == 3)
            #expect(denied.stdout.contains("Cognitive Services OpenAI User"))
            #expect(try await cli.run("status", "job.yaml", "--json").json["pending"] as? Int == 30)
            emulator.update { $0.clients[0].hasRole = true }
            #expect(try await cli.run("run", "job.yaml", "--no-progress").status == 0)
            cli.expectExactlyOnce("out/e2e.jsonl", rows: 30)
        }
    }

    @Test func killNineAtRandomMomentsLosesAndDuplicatesNothing() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.latencyMs = 20; $0.latencyJitterMs = 20 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator))
            cli.write("in.jsonl", prompts(400))
            var kills = 0
            for delay in [0.4, 0.9, 0.6, 1.2] {
                let (process, out, err) = try cli.start(["run", "job.yaml", "--no-progress"])
                try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
                guard process.isRunning else { break }
                kill(process.processIdentifier, SIGKILL)
                let result = try await CLI.finish(process, out, err)
                #expect(result.status == 9 || process.terminationReason == .uncaughtSignal)
                kills += 1
            }
            let final = try await cli.run("run", "job.yaml", "--no-progress", "--json")
            #expect(final.status == 0, "\(final.stderr)")
            cli.expectExactlyOnce("out/e2e.jsonl", rows: 400)
            let stats = emulator.stats
            #expect(stats.repeatedAnswers <= kills * 8, "at most the in-flight rows are sent again: \(stats.repeatedAnswers) for \(kills) kills")
            let database = try DatabaseQueue(path: cli.path(".foundry-batch/e2e.sqlite"))
            let succeeded = try await database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM rows WHERE state = 'succeeded'") }
            #expect(succeeded == 400)
        }
    }

    @Test func killNineDuringAPooledRunLosesAndDuplicatesNothing() async throws {
        let slow = emulatorConfiguration { $0.latencyMs = 20; $0.latencyJitterMs = 20 }
        try await Emulator.withRunning(slow) { east in
            try await Emulator.withRunning(slow) { west in
                let cli = CLI(environment: ["KEY_EAST": Self.key, "KEY_WEST": Self.key])
                cli.write(
                    "job.yaml",
                    """
                    name: e2e
                    input: in.jsonl
                    deployment: gpt-5-mini
                    auth: api-key
                    limits: {concurrency: 8, timeout: 10}
                    targets:
                      - { name: east, endpoint: "\(east.baseURL)", api_key_env: KEY_EAST }
                      - { name: west, endpoint: "\(west.baseURL)", api_key_env: KEY_WEST, tokens_per_minute: 2000000 }
                    """
                )
                cli.write("in.jsonl", prompts(300))
                var kills = 0
                for delay in [0.5, 0.8, 0.6] {
                    let (process, out, err) = try cli.start(["run", "job.yaml", "--no-progress"])
                    try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
                    guard process.isRunning else { break }
                    kill(process.processIdentifier, SIGKILL)
                    _ = try await CLI.finish(process, out, err)
                    kills += 1
                }
                let final = try await cli.run("run", "job.yaml", "--no-progress", "--json")
                #expect(final.status == 0, "\(final.stderr)")
                cli.expectExactlyOnce("out/e2e.jsonl", rows: 300)
                let targets = Set(cli.lines("out/e2e.jsonl").compactMap { $0["target"] as? String })
                #expect(targets == ["east", "west"], "both targets served and each line names one")
                let repeated = east.stats.repeatedAnswers + west.stats.repeatedAnswers
                #expect(repeated <= kills * 8, "at most the in-flight rows are sent again: \(repeated) for \(kills) kills")
                let status = try await cli.run("status", "job.yaml", "--json")
                let figures = (status.json["targets"] as? [[String: Any]]) ?? []
                #expect(figures.compactMap { $0["name"] as? String } == ["east", "west"])
                #expect(figures.reduce(0) { $0 + ($1["requests"] as? Int ?? 0) } >= 300)
            }
        }
    }

    @Test func twoProcessesOnOneJobShareTheWork() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.latencyMs = 10 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator))
            cli.write("in.jsonl", prompts(300))
            let a = try cli.start(["run", "job.yaml", "--no-progress", "--json"])
            let b = try cli.start(["run", "job.yaml", "--no-progress", "--json"])
            let first = try await CLI.finish(a.0, a.1, a.2)
            let second = try await CLI.finish(b.0, b.1, b.2)
            #expect(first.status == 0 && second.status == 0, "\(first.stderr) \(second.stderr)")
            let sent = (first.json["requests"] as? Int ?? 0) + (second.json["requests"] as? Int ?? 0)
            #expect(sent == 300)
            #expect(emulator.stats.repeatedAnswers == 0)
            cli.expectExactlyOnce("out/e2e.jsonl", rows: 300)
        }
    }

    @Test func twoProcessesShareOneTokensPerMinuteQuota() async throws {
        // 30k TPM and rows of about 80 tokens: the minute's burst holds 375 rows, the other
        // 75 come at 6 a second. Each process pacing to the whole quota would draw 429s.
        try await Emulator.withRunning(emulatorConfiguration { $0.tokensPerMinute = 30_000; $0.latencyMs = 10 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator, limits: "{concurrency: 8, timeout: 10, tokens_per_minute: 30000, max_attempts: 50}", extra: "request: {max_tokens: 77}"))
            cli.write("in.jsonl", prompts(450))
            _ = try await cli.run("load", "job.yaml")
            let a = try cli.start(["run", "job.yaml", "--no-progress", "--json"])
            let b = try cli.start(["run", "job.yaml", "--no-progress", "--json"])
            let first = try await CLI.finish(a.0, a.1, a.2)
            let second = try await CLI.finish(b.0, b.1, b.2)
            #expect(first.status == 0 && second.status == 0, "\(first.stderr) \(second.stderr)")
            let stats = emulator.stats
            #expect(Double(stats.throttled) < Double(stats.requests) * 0.02, "\(stats.throttled) of \(stats.requests) answered 429")
            #expect((first.json["requests"] as? Int ?? 0) > 0 && (second.json["requests"] as? Int ?? 0) > 0, "both processes worked")
            _ = try await cli.run("export", "job.yaml")
            cli.expectExactlyOnce("out/e2e.jsonl", rows: 450)
        }
    }

    @Test func sigtermExits130AndARerunFinishes() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.latencyMs = 200 }) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write("job.yaml", job(emulator))
            cli.write("in.jsonl", prompts(100))
            let (process, out, err) = try cli.start(["run", "job.yaml", "--no-progress"])
            let deadline = Date().addingTimeInterval(30)
            while emulator.stats.requests < 16, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            kill(process.processIdentifier, SIGTERM)
            let stopped = try await CLI.finish(process, out, err)
            #expect(stopped.status == 130, "\(stopped.stdout) \(stopped.stderr)")
            #expect(stopped.stdout.contains("interrupted"))
            let status = try await cli.run("status", "job.yaml", "--json")
            #expect(status.json["running"] as? Int == 0, "in-flight rows were released")
            let rerun = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(rerun.status == 0)
            cli.expectExactlyOnce("out/e2e.jsonl", rows: 100)
            #expect(emulator.stats.repeatedAnswers == 0)
        }
    }

    @Test func secretsAndTokensReachNoOutputFileOrDatabase() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.tokenTTL = 2 }) { emulator in
            var environment = [
                "AZURE_TENANT_ID": EmulatorConfiguration.demoTenantID, "AZURE_CLIENT_ID": EmulatorConfiguration.demoClientID,
                "AZURE_CLIENT_SECRET": "wrong-secret-also-never-printed", "AZURE_AUTHORITY_HOST": emulator.baseURL,
                "FOUNDRY_BATCH_LOG_LEVEL": "trace",
            ]
            let wrong = CLI(environment: environment)
            wrong.write("job.yaml", job(emulator, auth: "client-secret"))
            wrong.write("in.jsonl", prompts(20))
            let refused = try await wrong.run("run", "job.yaml", "--no-progress")
            #expect(refused.status == 3)
            #expect(refused.stdout.contains("AADSTS7000215"))
            environment["AZURE_CLIENT_SECRET"] = Self.secret
            let right = CLI(environment: environment)
            right.write("job.yaml", job(emulator, auth: "client-secret"))
            right.write("in.jsonl", prompts(20))
            let done = try await right.run("run", "job.yaml", "--no-progress")
            #expect(done.status == 0)
            // Emulator tokens are JWTs whose header encodes as "eyJhbGci".
            for (cli, result) in [(wrong, refused), (right, done)] {
                var texts = [result.stdout, result.stderr]
                for file in ["out/e2e.jsonl", "out/e2e.errors.jsonl", ".foundry-batch/e2e.sqlite", ".foundry-batch/e2e.sqlite-wal"] {
                    texts.append(String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: cli.path(file)))) ?? Data(), as: UTF8.self))
                }
                for text in texts {
                    #expect(!text.contains(Self.secret))
                    #expect(!text.contains("wrong-secret-also-never-printed"))
                    #expect(!text.contains("eyJhbGci"))
                }
            }
        }
    }

    @Test func authShowsWhoAnsweredAndNeverTheToken() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            var environment = [
                "AZURE_TENANT_ID": EmulatorConfiguration.demoTenantID, "AZURE_CLIENT_ID": EmulatorConfiguration.demoClientID,
                "AZURE_CLIENT_SECRET": Self.secret, "AZURE_AUTHORITY_HOST": emulator.baseURL,
            ]
            let cli = CLI(environment: environment)
            cli.write("job.yaml", job(emulator, auth: "client-secret"))
            let ok = try await cli.run("auth", "job.yaml")
            #expect(ok.status == 0)
            #expect(ok.stdout.contains("credential: client-secret (app \(EmulatorConfiguration.demoClientID)"))
            #expect(ok.stdout.contains("tenant: \(EmulatorConfiguration.demoTenantID)"))
            #expect(ok.stdout.contains("token expires:"))
            #expect(!ok.stdout.contains("eyJhbGci") && !ok.stdout.contains(Self.secret))
            environment["AZURE_CLIENT_SECRET"] = "expired-one"
            emulator.update { $0.clients[0].secretExpired = true; $0.clients[0].secret = "expired-one" }
            let expired = try await CLI(environment: environment).run("auth", cli.path("job.yaml"))
            #expect(expired.status == 3)
            #expect(expired.stderr.contains("AADSTS7000222"))
            #expect(expired.stderr.contains("create a new secret") || expired.stderr.contains("Create a new secret"))
            #expect(!expired.stderr.contains("expired-one"))
        }
    }

    /// Overlapping cron runs of a `{date}` job open a brand-new state file at the same moment.
    @Test func processesOpeningANewStateFileTogetherAllSucceed() async throws {
        for round in 0..<6 {
            let cli = CLI()
            cli.write("job.yaml", "name: fresh\ninput: in.jsonl\nendpoint: emulator\ndeployment: gpt-5-mini\n")
            let started = try (0..<6).map { _ in try cli.start(["status", "job.yaml", "--json"]) }
            for (process, out, err) in started {
                let result = try await CLI.finish(process, out, err)
                #expect(result.status == 0, "round \(round): \(result.stderr)")
            }
        }
    }
}
