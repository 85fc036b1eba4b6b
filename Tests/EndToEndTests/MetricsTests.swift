import FoundryEmulator
import Foundation
import FoundryTestSupport
import Testing

/// `run --metrics-file` and `metrics_file:` through the built binary: the file a textfile
/// collector reads agrees with `status --json` and with what the emulator answered.
@Suite(.serialized, .timeLimit(.minutes(3))) struct MetricsTests {
    static let key = "e2e-metrics-key-never-printed"

    @Test func theMetricsFileAgreesWithStatusAndWithTheService() async throws {
        let configuration = EmulatorConfiguration.forTests(secret: "e2e-metrics-secret", apiKeys: [Self.key]) {
            $0.throttleRate = 0.2
            $0.throttleSeconds = 0.05
        }
        try await Emulator.withRunning(configuration) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key])
            cli.write(
                "job.yaml",
                """
                name: night-one
                input: in.jsonl
                endpoint: \(emulator.baseURL)
                deployment: gpt-5-mini
                auth: api-key
                limits: {concurrency: 4, timeout: 10}
                prices: {prompt_per_1k: 0.001, completion_per_1k: 0.002}
                metrics_file: metrics/{name}.prom
                """
            )
            let lines = (1...40).map { "{\"id\": \"r\($0)\", \"prompt\": \"\($0 == 7 ? "BLOCKME" : "Prompt \($0)")\"}" }
            cli.write("in.jsonl", lines.joined(separator: "\n") + "\n")
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 1, "one row is refused by the content filter: \(run.stderr)")
            let text = cli.read("metrics/night-one.prom")
            let metrics = try PrometheusText(parsing: text)
            let status = try await cli.run("status", "job.yaml", "--json").json
            for state in ["pending", "running", "succeeded", "failed"] {
                #expect(metrics.value("foundry_batch_rows", ["state": state]) == Double(status[state] as? Int ?? -1), "\(state)")
            }
            #expect(metrics.samples.allSatisfy { $0.labels["job"] == "night-one" })
            #expect(metrics.value("foundry_batch_tokens_total", ["kind": "prompt"]) == Double(status["prompt_tokens"] as? Int ?? -1))
            #expect(metrics.value("foundry_batch_tokens_total", ["kind": "completion"]) == Double(status["completion_tokens"] as? Int ?? -1))
            let stats = emulator.stats
            #expect(stats.throttled > 0, "the run met 429s")
            let requests = metrics.all("foundry_batch_requests_total")
            #expect(requests.reduce(0) { $0 + $1.value } == Double(stats.requests), "every answered try is counted once")
            for (code, count) in stats.byStatus {
                #expect(metrics.value("foundry_batch_requests_total", ["target": "default", "status": code]) == Double(count), "status \(code)")
            }
            #expect(metrics.value("foundry_batch_throttled_total") == Double(stats.throttled))
            #expect(metrics.value("foundry_batch_run_in_progress") == 0, "the last write marks the end")
            #expect((metrics.value("foundry_batch_cost_estimated") ?? 0) > 0)
            #expect((metrics.value("foundry_batch_last_success_timestamp_seconds") ?? 0) > Date().timeIntervalSince1970 - 600)
            #expect(!text.contains(Self.key))

            // --metrics-file wins over the job's key, relative to where the command runs.
            let again = try await cli.run("run", "job.yaml", "--no-progress", "--metrics-file", "elsewhere.prom")
            #expect(again.status == 1)
            let second = try PrometheusText(parsing: cli.read("elsewhere.prom"))
            #expect(second.value("foundry_batch_rows", ["state": "succeeded"]) == 39, "the state's counts, not only this run's")
            #expect(second.value("foundry_batch_token_requests_total") == 0, "api-key: no token requests")
        }
    }
}
