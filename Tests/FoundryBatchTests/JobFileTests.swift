import FoundryAuth
import FoundryEmulator
import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

@Suite struct JobFileTests {
    let directory = TemporaryDirectory()

    func parse(_ yaml: String) throws(JobFileError) -> JobFile {
        try JobFile.parse(yaml: yaml, path: directory.file("jobs/job.yaml"), displayPath: "jobs/job.yaml")
    }

    func error(_ yaml: String) -> JobFileError? {
        do {
            _ = try parse(yaml)
            return nil
        } catch {
            return error
        }
    }

    @Test func readsEveryKeyOfTheContract() throws {
        let job = try parse(
            """
            name: nightly-summaries
            input: ["data/a-{date}.jsonl", data/b.jsonl]
            output: out/summaries-{date}.jsonl
            errors: out/summaries-{date}.errors.jsonl
            state: .foundry-batch/{name}-{date}.sqlite
            endpoint: https://my-foundry.openai.azure.com/
            deployment: gpt-5-mini
            api: responses
            api_version: 2024-10-21
            auth: client-secret
            request:
              system: "Summarise."
              max_tokens: 200
              temperature: 0.5
              stop: ["\\n"]
            limits:
              concurrency: 4
              requests_per_minute: 600
              tokens_per_minute: 100000
              max_attempts: 3
              timeout: 30
              max_retry_wait: 60
            variants:
              - { name: mini, deployment: gpt-5-mini }
              - { name: large-t07, deployment: gpt-4.1, request: { temperature: 0.7 } }
            prices: { prompt_per_1k: 0.25, completion_per_1k: 2 }
            """
        )
        #expect(job.name == "nightly-summaries")
        #expect(job.inputs == ["data/a-{date}.jsonl", "data/b.jsonl"])
        #expect(job.endpoint == .url("https://my-foundry.openai.azure.com"))
        #expect(job.api == .responses)
        #expect(job.apiVersion == "2024-10-21")
        #expect(job.auth == .clientSecret)
        #expect(JSONValue.object(job.request).jsonText == #"{"system":"Summarise.","max_tokens":200,"temperature":0.5,"stop":["\n"]}"#)
        #expect(job.limits.concurrency == 4)
        #expect(job.limits.tokensPerMinute == 100_000)
        #expect(job.limits.maxRetryWait == 60)
        #expect(job.variants.map(\.name) == ["mini", "large-t07"])
        #expect(JSONValue.object(job.variants[1].request).jsonText == #"{"temperature":0.7}"#)
        #expect(job.prices?.completionPer1K == 2)
    }

    @Test func resolvesPathsAgainstTheJobFolderWithPlaceholders() throws {
        let job = try parse(
            """
            name: nightly
            input: data/in-{date}.jsonl
            state: .foundry-batch/{name}-{date}.sqlite
            endpoint: emulator
            """
        )
        let paths = try job.resolve(date: "2026-03-04")
        let folder = directory.file("jobs")
        #expect(paths.inputs == [folder + "/data/in-2026-03-04.jsonl"])
        #expect(paths.state == folder + "/.foundry-batch/nightly-2026-03-04.sqlite")
        #expect(paths.output == folder + "/out/nightly.jsonl")
        #expect(paths.errors == folder + "/out/nightly.errors.jsonl")
        #expect(throws: UsageError.self) { try job.resolve(date: "2026-02-30") }
        #expect(throws: UsageError.self) { try job.resolve(date: "yesterday") }
        #expect(try job.resolve(date: nil).date.count == 10)
    }

    @Test func unknownKeyNamesFileLineAndSuggestsTheRightOne() {
        let failure = error(
            """
            name: x
            input: a.jsonl
            endpoint: emulator
            limits:
              concurency: 4
            """
        )
        #expect(failure?.file == "jobs/job.yaml")
        #expect(failure?.line == 5)
        #expect(failure?.key == "limits.concurency")
        #expect(failure?.description.contains("did you mean limits.concurrency?") == true)
    }

    @Test func wrongTypesAndMissingKeysAreNamed() {
        #expect(error("input: a.jsonl\nendpoint: emulator")?.key == "name")
        #expect(error("name: x\nendpoint: emulator")?.key == "input")
        #expect(error("name: x\ninput: a\nendpoint: emulator\nlimits: {concurrency: many}")?.key == "limits.concurrency")
        #expect(error("name: x\ninput: a\nendpoint: emulator\nlimits: {concurrency: 0}")?.message.contains("at least 1") == true)
        #expect(error("name: x\ninput: a\nendpoint: emulator\napi: completions")?.key == "api")
        #expect(error("name: 'bad name'\ninput: a\nendpoint: emulator")?.key == "name")
        #expect(error("name: x\ninput: a\nendpoint: ftp://host")?.key == "endpoint")
        #expect(error("name: x\ninput: a\nendpoint: emulator\nrequest: [1]")?.key == "request")
        #expect(error("name: x\ninput: a\nendpoint: emulator\nvariants: [{name: a}, {name: a}]")?.key == "variants[1].name")
        #expect(error("- just\n- a list")?.message.contains("mapping") == true)
        #expect(error("name: [unclosed")?.message.contains("not valid YAML") == true)
    }

    @Test func readsTheEngineAndBatchBlocks() throws {
        let job = try parse(
            """
            name: n
            input: in.jsonl
            endpoint: emulator
            engine: auto
            batch: {deployment: gpt-5-mini-batch, completion_window: 24h, max_requests_per_file: 100000, max_bytes_per_file: 1000000, poll_interval: 60, finish_by: "06:30"}
            prices: {prompt_per_1k: 1, batch_factor: 0.4}
            """
        )
        #expect(job.engine == .auto)
        #expect(job.batch.deployment == "gpt-5-mini-batch" && job.batch.maxRequestsPerFile == 100_000 && job.batch.maxBytesPerFile == 1_000_000)
        #expect(job.batch.finishBy?.seconds == 6 * 3600 + 30 * 60)
        #expect(job.prices?.batchFactor == 0.4)
        #expect(JobFile.TimeOfDay("23:59:59")?.seconds == 86_399)
        #expect(JobFile.TimeOfDay("24:00") == nil && JobFile.TimeOfDay("6") == nil && JobFile.TimeOfDay("06:60") == nil)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let evening = Date(timeIntervalSince1970: 86_400 * 10 + 22 * 3600)
        #expect(JobFile.TimeOfDay("06:00")!.next(after: evening, calendar: calendar) == Date(timeIntervalSince1970: 86_400 * 11 + 6 * 3600))
        #expect(JobFile.TimeOfDay("23:00")!.next(after: evening, calendar: calendar) == Date(timeIntervalSince1970: 86_400 * 10 + 23 * 3600))
        let base = "name: n\ninput: in.jsonl\nendpoint: emulator\n"
        #expect(error(base + "engine: auto\n")?.key == "batch.finish_by")
        #expect(error(base + "engine: nightly\n")?.key == "engine")
        #expect(error(base + "batch: {poll_intervall: 60}\n")?.message.contains("did you mean batch.poll_interval") == true)
        #expect(error(base + "batch: {max_requests_per_file: 100001}\n")?.key == "batch.max_requests_per_file")
        #expect(error(base + "batch: {finish_by: \"6am\"}\n")?.key == "batch.finish_by")
        #expect(error(base + "batch: {completion_window: 2h}\n")?.key == "batch.completion_window")
    }

    @Test func readsTheEmulatorBlock() throws {
        let job = try parse("name: x\ninput: a\nendpoint: emulator\nemulator: {token_ttl: 3, tpm: 6000, fault_rate: 0.2}")
        #expect(job.emulator.tokenTTL == 3)
        #expect(job.emulator.tpm == 6000)
        #expect(error("name: x\ninput: a\nendpoint: emulator\nemulator: {fault_rate: 2}")?.key == "emulator.fault_rate")
    }

    @Test func readsEveryKeyOfATarget() throws {
        let job = try parse(
            """
            name: pooled
            input: in.jsonl
            deployment: gpt-5-mini
            auth: client-secret
            api_version: 2024-10-21
            emulator: { latency_ms: 5 }
            targets:
              - name: east
                endpoint: https://east-res.openai.azure.com/
                deployment: gpt-5-mini-east
                auth: api-key
                api_key_env: AZURE_OPENAI_API_KEY_EAST
                api_version: 2025-01-01
                tokens_per_minute: 450000
                requests_per_minute: 2700
                priority: 1
                models: [gpt-5-mini]
              - { name: local, endpoint: emulator, priority: 2, emulator: { tpm: 1000 } }
            """
        )
        #expect(job.endpoint == nil && job.isPooled)
        let east = job.targets[0], local = job.targets[1]
        #expect(east.name == "east" && east.endpoint == .url("https://east-res.openai.azure.com"))
        #expect(east.deployment(for: "gpt-5-mini") == "gpt-5-mini-east" && east.auth == .apiKey && east.apiKeyEnv == "AZURE_OPENAI_API_KEY_EAST")
        #expect(east.apiVersion == "2025-01-01" && east.tokensPerMinute == 450_000 && east.requestsPerMinute == 2700)
        #expect(east.priority == 1 && east.models == ["gpt-5-mini"] && east.line == 8)
        #expect(local.auth == .clientSecret && local.apiVersion == "2024-10-21" && local.apiKeyEnv == "AZURE_OPENAI_API_KEY", "the job's defaults")
        #expect(local.deployment(for: "gpt-4.1") == "gpt-4.1" && local.serves("anything"))
        #expect(local.emulator.tpm == 1000 && local.emulator.latencyMs == 5, "the target's emulator block over the job's")
    }

    @Test(arguments: [
        ("targets: []", "targets"),
        ("targets:\n  - { name: a, endpont: emulator }", "targets[0].endpont"),
        ("targets:\n  - { name: a }", "targets[0].endpoint"),
        ("targets:\n  - { name: a, endpoint: emulator }\n  - { name: a, endpoint: emulator }", "targets[1].name"),
        ("targets:\n  - { name: 'a b', endpoint: emulator }", "targets[0].name"),
        ("targets:\n  - { name: a, endpoint: emulator, models: [gpt-4.1] }", "targets"),
        ("targets:\n  - { name: a, endpoint: emulator, api_key_env: 'A-B' }", "targets[0].api_key_env"),
        ("targets:\n  - { name: a, endpoint: emulator, priority: -1 }", "targets[0].priority"),
        ("targets:\n  - { name: a, endpoint: emulator, tokens_per_minute: 0 }", "targets[0].tokens_per_minute"),
    ])
    func badTargetsAreNamedWithTheirKey(yaml: String, key: String) {
        let problem = error("name: t\ninput: in.jsonl\ndeployment: gpt-5-mini\n" + yaml)
        #expect(problem?.key == key, "\(problem?.description ?? "accepted")")
        #expect(problem?.line != nil)
    }

    @Test func withoutTargetsTheJobIsItsOwnTarget() throws {
        let job = try parse("name: t\ninput: in.jsonl\nendpoint: emulator\nauth: api-key")
        #expect(!job.isPooled && job.targetsToUse.count == 1)
        #expect(job.targetsToUse[0].endpoint == .emulator && job.targetsToUse[0].auth == .apiKey && job.targetsToUse[0].tokensPerMinute == nil)
        #expect(error("name: t\ninput: in.jsonl")?.key == "endpoint", "an endpoint is needed without targets")
    }
}
