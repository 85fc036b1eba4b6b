import AsyncHTTPClient
import FoundryEmulator
import Foundation
import FoundryTestSupport
import GRDB
import NIOCore
import NIOHTTP1
import Testing

/// `engine: batch` and `engine: auto`, driven through the built binary against the
/// emulator's Batch API, as cron runs a nightly batch.
@Suite(.serialized, .timeLimit(.minutes(3))) struct BatchEngineTests {
    static let key = "e2e-batch-key-never-printed"

    func emulatorConfiguration(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
        EmulatorConfiguration.forTests(secret: "e2e-batch-secret", apiKeys: [Self.key]) { configuration in
            configuration.batchSeconds = 0.5
            change(&configuration)
        }
    }

    func job(
        _ emulator: Emulator, engine: String = "batch", batch: String = "{poll_interval: 0.1}", limits: String = "{concurrency: 16, timeout: 10}",
        extra: String = ""
    ) -> String {
        """
        name: nightly
        input: in.jsonl
        endpoint: \(emulator.baseURL)
        deployment: gpt-5-mini
        auth: api-key
        engine: \(engine)
        batch: \(batch)
        limits: \(limits)
        \(extra)
        """
    }

    func prompts(_ count: Int) -> String {
        (1...count).map { "{\"id\": \"r\($0)\", \"prompt\": \"Prompt \($0)\"}" }.joined(separator: "\n") + "\n"
    }

    func cli() -> CLI { CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key]) }

    /// Runs `body` with a CLI whose folder holds `job.yaml` (made for the emulator) and
    /// `rows` prompts, against an emulator of `configuration`.
    func withJob(
        _ configuration: EmulatorConfiguration, rows: Int, _ make: (Emulator) -> String, _ body: (CLI, Emulator) async throws -> Void
    ) async throws {
        try await Emulator.withRunning(configuration) { emulator in
            let cli = cli()
            cli.write("job.yaml", make(emulator))
            cli.write("in.jsonl", prompts(rows))
            try await body(cli, emulator)
        }
    }

    /// Waits until the provider has answered some but not all of the first batch's lines.
    func untilHalfDone(_ emulator: Emulator) async throws {
        var request = HTTPClientRequest(url: emulator.baseURL + "/openai/v1/batches?limit=1")
        request.headers.add(name: "api-key", value: Self.key)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            let page = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            let counts = ((page?["data"] as? [[String: Any]])?.first?["request_counts"] as? [String: Int]) ?? [:]
            if let done = counts["completed"], let total = counts["total"], done > 0, done < total { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("the batch never got half done")
    }

    /// Starts `run` and returns once the provider has its first batch.
    func runUntilCreated(_ cli: CLI, _ emulator: Emulator) async throws -> (Process, String, String) {
        let started = try cli.start(["run", "job.yaml", "--no-progress"])
        let deadline = Date().addingTimeInterval(30)
        while emulator.stats.batchesCreated == 0, Date() < deadline { try await Task.sleep(for: .milliseconds(2)) }
        return started
    }

    func batches(_ cli: CLI) throws -> [Row] {
        let database = try DatabaseQueue(path: cli.path(".foundry-batch/nightly.sqlite"))
        return try database.read { try Row.fetchAll($0, sql: "SELECT number, phase, batch_id, status, rows FROM batches ORDER BY number") }
    }

    @Test func aBatchJobIsOneBatchSendsNothingOnlineAndWritesTheOnlineShape() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let cli = cli()
            let prices = "prices: {prompt_per_1k: 1, completion_per_1k: 2}"
            cli.write("job.yaml", job(emulator, extra: prices))
            cli.write("in.jsonl", prompts(500))
            let run = try await cli.run("run", "job.yaml", "--json", "--no-progress")
            #expect(run.status == 0, "\(run.stderr)")
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 500)
            let stats = emulator.stats
            #expect(stats.requests == 0, "no online request")
            #expect(stats.batchesCreated == 1 && stats.filesUploaded == 1)
            #expect(stats.batchRepeatedAnswers == 0)
            // The same rows online: the same keys on every line.
            cli.write("online.yaml", job(emulator, engine: "online", extra: prices).replacingOccurrences(of: "name: nightly", with: "name: online"))
            #expect(try await cli.run("run", "online.yaml", "--no-progress").status == 0)
            let batchLine = try #require(cli.lines("out/nightly.jsonl").first)
            let onlineLine = try #require(cli.lines("out/online.jsonl").first)
            #expect(Set(batchLine.keys) == Set(onlineLine.keys))
            #expect(Set((batchLine["response"] as? [String: Any])?.keys ?? [:].keys) == Set((onlineLine["response"] as? [String: Any])?.keys ?? [:].keys))
            // Cost at the batch price: half the online run's for the same tokens.
            let batchCost = try #require(run.json["estimated_cost"] as? Double)
            let status = try await cli.run("status", "online.yaml", "--json")
            let onlineCost = try #require(status.json["estimated_cost"] as? Double)
            #expect(abs(batchCost * 2 - onlineCost) < 0.01, "batch \(batchCost) vs online \(onlineCost)")
            let listed = try await cli.run("status", "job.yaml", "--json")
            #expect((listed.json["batches"] as? [[String: Any]])?.first?["rows"] as? Int == 500)
        }
    }

    @Test func aFileLimitCutsTheRowsIntoSeveralBatchesAndEachModelGetsItsOwn() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let cli = cli()
            cli.write("job.yaml", job(emulator, batch: "{poll_interval: 0.1, max_requests_per_file: 200}"))
            var lines = prompts(500)
            for index in 1...30 {
                lines += #"{"custom_id": "m\#(index)", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Other \#(index)"}]}}"# + "\n"
            }
            cli.write("in.jsonl", lines)
            let dry = try await cli.run("run", "job.yaml", "--dry-run", "--json")
            let files = (dry.json["batch_files"] as? [[String: Any]])?.compactMap { $0["files"] as? Int }
            #expect(files == [3, 1], "\(dry.stdout)")
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(emulator.stats.batchesCreated == 4, "three of gpt-5-mini, one of gpt-4.1")
            #expect(emulator.stats.requests == 0)
            #expect(cli.lines("out/nightly.jsonl").count == 530)
            #expect(try batches(cli).map { $0["rows"] as Int }.sorted() == [30, 100, 200, 200])
        }
    }

    @Test(arguments: ["2024-10-21", "2024-07-01-preview"]) func theApiVersionPathStyleWorksInEitherSpelling(_ version: String) async throws {
        try await withJob(emulatorConfiguration(), rows: 30, { job($0, extra: "api_version: \(version)") }) { cli, emulator in
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(emulator.stats.batchCalls["batches.create"]?.keys.contains("201") == true, "the api-version style answers 201")
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 30)
            let status = try await cli.run("status", "job.yaml")
            #expect(status.stdout.contains(version == "2024-07-01-preview" ? "collected (Completed)" : "collected (completed)"), "\(status.stdout)")
        }
    }

    @Test func aFileTheProviderRefusesStopsWithExit3NamingTheFileAndReason() async throws {
        try await withJob(emulatorConfiguration(), rows: 5, { job($0, batch: "{poll_interval: 0.1, deployment: no-such-batch-deployment}") }) { cli, emulator in
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 3, "\(run.stderr)")
            #expect(run.stdout.contains("foundry-batch-1.jsonl") && run.stdout.contains("model_not_found"), "\(run.stdout)")
            let status = try await cli.run("status", "job.yaml", "--json")
            #expect(status.json["pending"] as? Int == 5)
            #expect(!run.stdout.contains(Self.key) && !run.stderr.contains(Self.key))
        }
    }

    @Test func killNineAfterTheCreateAndAfterAPollResumesTheSameBatch() async throws {
        try await withJob(emulatorConfiguration { $0.batchSeconds = 3 }, rows: 300, { job($0) }) { cli, emulator in
            // Killed the moment the provider has the batch: its id may not be committed yet.
            var (process, out, err) = try await runUntilCreated(cli, emulator)
            let deadline = Date().addingTimeInterval(30)
            kill(process.processIdentifier, SIGKILL)
            _ = try await CLI.finish(process, out, err)
            // Killed again after a poll was committed.
            (process, out, err) = try cli.start(["run", "job.yaml", "--no-progress"])
            while (try? batches(cli).first?["status"] as String?) ?? nil == nil, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(300))
            kill(process.processIdentifier, SIGKILL)
            _ = try await CLI.finish(process, out, err)
            let final = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(final.status == 0, "\(final.stderr)")
            #expect(emulator.stats.batchesCreated == 1, "the rerun followed the batch it had made")
            #expect(emulator.stats.batchRepeatedAnswers == 0)
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 300)
        }
    }

    @Test func threeRunsAtOnceShareTheBatchesAndMakeNoneTwice() async throws {
        try await withJob(emulatorConfiguration { $0.batchSeconds = 1 }, rows: 200, { job($0, batch: "{poll_interval: 0.1, max_requests_per_file: 20}") }) { cli, emulator in
            #expect(try await cli.run("load", "job.yaml").status == 0)
            let runs = try (0..<3).map { _ in try cli.start(["run", "job.yaml", "--no-progress"]) }
            for (process, out, err) in runs {
                let result = try await CLI.finish(process, out, err)
                #expect(result.status == 0, "\(result.stderr)")
            }
            let recorded = try batches(cli)
            #expect(recorded.count == 10)
            #expect(emulator.stats.batchesCreated == 10 && emulator.stats.filesUploaded == 10, "\(emulator.stats.batchesCreated) created")
            #expect(emulator.stats.batchRowsInTwoLiveBatches == 0)
            #expect(emulator.stats.batchRepeatedAnswers == 0)
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 200)
        }
    }

    @Test func aBatchThatExpiresHalfDoneKeepsItsAnswersAndTheRestGoesAgain() async throws {
        try await withJob(emulatorConfiguration { $0.batchExpireFirst = 1 }, rows: 200, { job($0) }) { cli, emulator in
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(emulator.stats.batchesCreated == 2)
            #expect(emulator.stats.batchRepeatedAnswers == 0, "no answered row was sent again")
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 200)
            let second = try #require(try batches(cli).last)
            #expect((second["rows"] as Int) < 200 && (second["rows"] as Int) > 0)
        }
    }

    @Test func refusedCreatesForTheEnqueuedTokenQuotaAreTriedAgain() async throws {
        try await withJob(emulatorConfiguration { $0.batchRefuseCreates = 2; $0.batchFailValidationTokenLimit = 1 }, rows: 50, { job($0, batch: "{poll_interval: 0.05}") }) { cli, emulator in
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(emulator.stats.batchCreatesRefused == 2)
            #expect(emulator.stats.batchesCreated == 2, "one failed validation for the quota, then one ran")
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 50)
        }
    }

    @Test func noWaitExits75WhileBatchesRunThenZero() async throws {
        try await withJob(emulatorConfiguration { $0.batchSeconds = 1.5 }, rows: 40, { job($0) }) { cli, emulator in
            let first = try await cli.run("run", "job.yaml", "--no-wait", "--json", "--no-progress")
            #expect(first.status == 75, "\(first.stderr)")
            #expect(first.json["batches_running"] as? Int == 1)
            let status = try await cli.run("status", "job.yaml")
            #expect(status.stdout.contains("batches (1 live of 1)"), "\(status.stdout)")
            var last = first
            let deadline = Date().addingTimeInterval(30)
            while last.status == 75, Date() < deadline {
                try await Task.sleep(for: .milliseconds(300))
                last = try await cli.run("run", "job.yaml", "--no-wait", "--no-progress")
            }
            #expect(last.status == 0, "\(last.stderr)")
            #expect(emulator.stats.batchesCreated == 1)
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 40)
        }
    }

    @Test func interruptLeavesTheBatchRunningAndCancelKeepsFinishedWork() async throws {
        try await withJob(emulatorConfiguration { $0.batchSeconds = 4 }, rows: 100, { job($0) }) { cli, emulator in
            let (process, out, err) = try await runUntilCreated(cli, emulator)
            try await Task.sleep(for: .milliseconds(300))
            kill(process.processIdentifier, SIGINT)
            let interrupted = try await CLI.finish(process, out, err)
            #expect(interrupted.status == 130, "\(interrupted.stderr)")
            #expect(emulator.stats.batchCalls["batches.cancel"] == nil, "Ctrl-C leaves the batch running")
            // Half way through, cancel: the finished half is kept, the rest is pending.
            try await untilHalfDone(emulator)
            let cancel = try await cli.run("cancel", "job.yaml")
            #expect(cancel.status == 0, "\(cancel.stderr)")
            let status = try await cli.run("status", "job.yaml", "--json")
            let succeeded = status.json["succeeded"] as? Int ?? -1, pending = status.json["pending"] as? Int ?? -1
            #expect(succeeded > 0 && pending > 0 && succeeded + pending == 100, "\(status.stdout)")
            let rerun = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(rerun.status == 0, "\(rerun.stderr)")
            #expect(emulator.stats.batchRepeatedAnswers == 0)
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 100)
        }
    }

    @Test func cancelWhileARunWaitsStopsThatRunToo() async throws {
        try await withJob(emulatorConfiguration { $0.batchSeconds = 4 }, rows: 60, { job($0) }) { cli, emulator in
            let (process, out, err) = try await runUntilCreated(cli, emulator)
            try await untilHalfDone(emulator)
            let cancel = try await cli.run("cancel", "job.yaml")
            #expect(cancel.status == 0, "\(cancel.stderr)")
            let run = try await CLI.finish(process, out, err)
            #expect(run.status == 3, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("foundry-batch cancel"), "\(run.stdout)")
            #expect(emulator.stats.batchesCreated == 1, "the waiting run submitted nothing more")
            let status = try await cli.run("status", "job.yaml", "--json")
            #expect((status.json["succeeded"] as? Int ?? 0) + (status.json["pending"] as? Int ?? 0) == 60)
            #expect(try batches(cli).allSatisfy { ($0["phase"] as String) == "collected" })
        }
    }

    @Test func autoWithAFinishByBatchesCannotMeetFinishesTheTailOnline() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.batchSeconds = 3600 }) { emulator in
            let cli = cli()
            let formatter = DateFormatter()
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "HH:mm:ss"
            let finishBy = Date().addingTimeInterval(30)
            // One attempt per row: the batch the job cancelled itself must not use it up.
            cli.write(
                "job.yaml",
                job(emulator, engine: "auto", batch: "{poll_interval: 0.2, finish_by: \"\(formatter.string(from: finishBy))\"}", limits: "{concurrency: 16, max_attempts: 1}")
            )
            cli.write("in.jsonl", prompts(20))
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(Date() < finishBy, "done before finish_by")
            #expect(emulator.stats.batchesCreated == 1, "batch first")
            #expect(emulator.stats.batchCalls["batches.cancel"]?.values.reduce(0, +) ?? 0 >= 1)
            #expect(emulator.stats.requests == 20, "the tail went online")
            cli.expectExactlyOnce("out/nightly.jsonl", rows: 20)
        }
    }
}
