import AsyncHTTPClient
import FoundryAuth
import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// Several targets for one model, each an in-process emulator of its own (`endpoint:
/// emulator` inside a target): routing by quota, spill-over, parking, and the stop when
/// no target is left.
@Suite(.timeLimit(.minutes(1))) struct TargetPoolTests {
    func prompts(_ count: Int) -> String {
        (1...count).map { "{\"id\": \"p\($0)\", \"prompt\": \"Question \($0)\"}" }.joined(separator: "\n")
    }

    /// Loads `rows` prompts into a job with `targets` (YAML list items) and runs it.
    func run(_ targets: String, rows: Int = 60, limits: String = "max_retry_wait: 5") async throws -> (RunSummary, [String: Int], Fixture) {
        let fixture = try await Fixture(yaml: "auth: api-key\nrequest: {max_tokens: 20}\nlimits: {concurrency: 8, \(limits)}\ntargets:\n\(targets)")
        _ = try await fixture.load(prompts(rows))
        let summary = try await fixture.session().run(options: RunOptions(progress: .none, gracePeriod: 0.5), control: RunControl())
        var served: [String: Int] = [:]
        for line in fixture.directory.jsonLines("out/test.jsonl") + fixture.directory.jsonLines("out/test.errors.jsonl") {
            served[line["target"]?.stringValue ?? "none", default: 0] += 1
        }
        return (summary, served, fixture)
    }

    @Test func rowsGoInProportionToQuota() async throws {
        let (summary, served, _) = try await run(
            """
              - { name: east, endpoint: emulator, tokens_per_minute: 30000, emulator: { tpm: 30000 } }
              - { name: west, endpoint: emulator, tokens_per_minute: 60000, emulator: { tpm: 60000 } }
            """,
            rows: 90
        )
        #expect(summary.exitStatus == .success)
        #expect(summary.counts.succeeded == 90)
        #expect((25...35).contains(served["east"] ?? 0) && (55...65).contains(served["west"] ?? 0), "about 1:2, got \(served)")
    }

    @Test func anExhaustedTargetIsParkedAndTheOtherFinishes() async throws {
        let (summary, served, fixture) = try await run(
            """
              - { name: spent, endpoint: emulator, emulator: { retry_after: 86400 } }
              - { name: fresh, endpoint: emulator }
            """
        )
        #expect(summary.exitStatus == .success, "\(summary.stop?.message ?? "")")
        #expect(served == ["fresh": 60], "every row answered by the live target: \(served)")
        #expect(summary.counters.throttled == 0, "a 429 beyond max_retry_wait parks, it is not waited for")
        let status = StatusReport(job: "test", report: try await fixture.queue.report(), prices: nil)
        let targets = status.report.targets
        #expect(targets.map(\.name) == ["fresh", "spent"])
        #expect(targets[0].requests == 60 && targets[0].parking == nil && targets[0].latencyP50 != nil && targets[0].completionTokens > 0)
        // The 429 that parked it ended no try of its row, so it is in no history yet.
        #expect(targets[1].requests == 0 && targets[1].throttled == 0, "\(targets[1])")
        #expect(targets[1].parking?.until.map { $0.timeIntervalSinceNow > 80_000 } == true)
        #expect(status.json["targets"]?.arrayValue?.count == 2 && status.text.contains("spent") && status.text.contains("until "))
    }

    @Test func aTargetWithoutTheDeploymentIsParked() async throws {
        let (summary, served, _) = try await run(
            """
              - { name: wrong, endpoint: emulator, deployment: gpt-missing }
              - { name: right, endpoint: emulator }
            """
        )
        #expect(summary.exitStatus == .success, "\(summary.stop?.message ?? "")")
        #expect(served == ["right": 60])
    }

    @Test func whenNoTargetIsLeftTheRunStopsWithEachReason() async throws {
        let (summary, _, fixture) = try await run(
            """
              - { name: a, endpoint: emulator, emulator: { retry_after: 86400 } }
              - { name: b, endpoint: emulator, deployment: gpt-missing }
            """
        )
        #expect(summary.exitStatus == .stopped)
        let message = summary.stop?.message ?? ""
        #expect(message.contains("no target is left for model 'gpt-5-mini'") && message.contains("a: ") && message.contains("b: "), "\(message)")
        #expect(message.contains("DeploymentNotFound") && message.contains("parked until"))
        let counts = try await fixture.queue.counts().job
        #expect(counts.pending == 60 && counts.succeeded == 0, "the rows stay pending")
    }

    @Test func aHigherTierGetsRowsOnlyWhileTheLowerIsSaturated() async throws {
        // A row is estimated at 23 tokens ("Question N" / 4, rounded up, + max_tokens 20), so
        // the preferred target's bucket (one minute of 460 tokens) holds 20 rows; the rest
        // spill over to the fallback rather than wait for it to refill.
        let (summary, served, _) = try await run(
            """
              - { name: preferred, endpoint: emulator, priority: 1, tokens_per_minute: 460 }
              - { name: fallback, endpoint: emulator, priority: 2 }
            """
        )
        #expect(summary.exitStatus == .success)
        let preferred = served["preferred"] ?? 0
        #expect((20...24).contains(preferred) && preferred + (served["fallback"] ?? 0) == 60, "\(served)")
    }

    @Test func targetsOfOneCredentialShareOneTokenProvider() async throws {
        let http = HTTPClient.forRun(concurrency: 1)
        defer { Task { try? await http.shutdown() } }
        let values = [
            "AZURE_TENANT_ID": "00000000-0000-4000-8000-000000000001", "AZURE_CLIENT_ID": "11111111-1111-4111-8111-111111111111",
            "AZURE_CLIENT_SECRET": "not-a-real-secret",
        ]
        let cache = CredentialCache()
        let east = try cache.provider(kind: .clientSecret, environment: CredentialEnvironment(values), http: http)
        let west = try cache.provider(kind: .clientSecret, environment: CredentialEnvironment(values), http: http)
        #expect(east === west, "one provider, one token, for one credential")
        var elsewhere = values
        elsewhere["AZURE_AUTHORITY_HOST"] = "http://127.0.0.1:9"
        #expect(try cache.provider(kind: .clientSecret, environment: CredentialEnvironment(elsewhere), http: http) !== east)
        #expect(try cache.provider(kind: .managedIdentity, environment: CredentialEnvironment(values), http: http) !== east)
    }

    @Test func aLineForAModelNoTargetServesFailsItsLoad() async throws {
        let fixture = try await Fixture(yaml: "targets:\n  - { name: a, endpoint: emulator, models: [gpt-5-mini] }")
        let line = #"{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4.1", "messages": []}}"#
        do {
            _ = try await fixture.load(line)
            Issue.record("a row no target serves was loaded")
        } catch let error as InputError {
            #expect(error.line == 1 && error.description.contains("model 'gpt-4.1' is served by no target"))
        }
    }

    @Test func anUnsetApiKeyEnvIsAJobFileErrorWithItsLine() async throws {
        let fixture = try await Fixture(
            yaml: "auth: api-key\ntargets:\n  - { name: east, endpoint: https://east.example, api_key_env: FOUNDRY_BATCH_TEST_UNSET_KEY }"
        )
        do {
            try await ServiceSession.with(job: fixture.job, concurrency: 1) { _ in }
            Issue.record("an unset api_key_env was accepted")
        } catch let error as JobFileError {
            #expect(error.line != nil && error.exitStatus == .badInput)
            #expect(error.description.contains("FOUNDRY_BATCH_TEST_UNSET_KEY is not set") && error.description.contains("east"))
        }
    }

    @Test func anUnreachableTargetHoldsNoRowWhileAnotherServes() async throws {
        // Port 1 on loopback refuses at once; a retry goes to the other target, and after a
        // few tries without an answer the silent one goes last.
        let (summary, served, fixture) = try await run(
            """
              - { name: gone, endpoint: "http://127.0.0.1:1", auth: none }
              - { name: here, endpoint: emulator }
            """,
            rows: 30, limits: "max_retry_wait: 5, max_attempts: 2, timeout: 3"
        )
        #expect(summary.exitStatus == .success, "\(summary.stop?.message ?? "")")
        #expect(served == ["here": 30], "\(served)")
        let figures = try await fixture.queue.report().targets
        #expect(figures.first { $0.name == "gone" }.map { $0.requests > 0 && $0.throttled == 0 } == true, "status reads tries without a status code")
    }

    @Test func aTargetWithItsOwnDeploymentServesTheJobsModelOnly() async throws {
        let fixture = try await Fixture(yaml: "targets:\n  - { name: dz, endpoint: emulator, deployment: gpt-5-mini-dz }")
        #expect(fixture.job.targets[0].models == ["gpt-5-mini"])
        let line = #"{"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": "x"}}"#
        await #expect(throws: InputError.self) { _ = try await fixture.load(line) }
    }

    @Test func aRowIsSentToATargetUnderItsDeploymentName() {
        let target = ServiceTarget(baseURL: "https://dz.example", apiVersion: nil, authorization: .none)
        var spec = JobFile.Target(name: "dz", endpoint: .url(target.baseURL), auth: .none)
        spec.deployment = "gpt-5-mini-dz"
        let lane = TargetPool.Lane(
            spec: spec, target: target, gate: RateGate(concurrency: 1, requestsPerMinute: nil, tokensPerMinute: nil),
            transport: HTTPTransport(http: .shared, target: target, timeout: 1)
        )
        func row(_ body: String) -> ClaimedRow {
            ClaimedRow(seq: 1, id: "r", variant: "", api: .chat, deployment: "gpt-5-mini", body: body, attempts: 0, estimatedTokens: 1)
        }
        let simple = lane.routed(row(#"{"model":"gpt-5-mini","messages":[{"role":"user","content":"hi"}]}"#))
        #expect(simple.deployment == "gpt-5-mini-dz")
        #expect(simple.body == #"{"model":"gpt-5-mini-dz","messages":[{"role":"user","content":"hi"}]}"#)
        let batch = lane.routed(row(#"{"messages":[],"model":"gpt-5-mini","temperature":0}"#))
        #expect(batch.body == #"{"messages":[],"model":"gpt-5-mini-dz","temperature":0}"#, "a body with model elsewhere keeps its key order")
    }
}
