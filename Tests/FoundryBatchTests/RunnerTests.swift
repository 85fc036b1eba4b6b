import AsyncHTTPClient
import FoundryAuth
import FoundryEmulator
import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// The runner against the in-process emulator.
@Suite(.timeLimit(.minutes(1))) struct RunnerTests {
    static let secret = "runner-test-secret"

    func configuration(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
        EmulatorConfiguration.forTests(secret: Self.secret, apiKeys: ["runner-key"], change)
    }

    func prompts(_ count: Int, prefix: String = "p") -> String {
        (1...count).map { "{\"id\": \"\(prefix)\($0)\", \"prompt\": \"Question number \($0) of \(prefix)\"}" }.joined(separator: "\n")
    }

    /// Runs `fixture`'s rows against `emulator` and returns the summary.
    func run(
        _ fixture: Fixture, _ emulator: Emulator, bearer: Bool = false, concurrency: Int = 8, maxAttempts: Int = 8,
        control: RunControl = RunControl()
    ) async throws -> (RunSummary, HTTPClient) {
        let http = HTTPClient.forRun(concurrency: concurrency)
        let authorization: RequestAuthorization =
            bearer
            ? .bearer(
                TokenProvider(
                    credential: ClientSecretCredential(
                        tenantID: EmulatorConfiguration.demoTenantID, clientID: EmulatorConfiguration.demoClientID, secret: Self.secret,
                        authorityHost: emulator.baseURL, http: http
                    )
                )
            )
            : .apiKey("runner-key")
        let target = ServiceTarget(baseURL: emulator.baseURL, apiVersion: nil, authorization: authorization)
        let session = try fixture.session(concurrency: concurrency, maxAttempts: maxAttempts)
        let service = ServiceSession(http: http, target: target)
        let summary = try await BatchRun.execute(session: session, service: service, options: RunOptions(progress: .none), control: control)
        try await http.shutdown()
        return (summary, http)
    }

    /// Each result line carries the emulator's answer to that row's own prompt.
    func expectOwnAnswers(_ fixture: Fixture, count: Int, prefix: String = "p") throws {
        let lines = fixture.directory.jsonLines("out/test.jsonl")
        #expect(lines.count == count)
        #expect(Set(lines.compactMap { $0["custom_id"]?.stringValue }).count == count, "one line per row")
        for line in lines {
            let id = try #require(line["custom_id"]?.stringValue)
            let number = id.dropFirst(prefix.count)
            let content = line["response"]?["body"]?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue
            #expect(content == EmulatorAnswer.text(for: "Question number \(number) of \(prefix)"))
        }
    }

    @Test func everyRowSucceedsWithItsOwnAnswer() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(30))
        try await Emulator.withRunning(configuration()) { emulator in
            let (summary, _) = try await run(fixture, emulator)
            #expect(summary.exitStatus == .success)
            #expect(summary.counts.succeeded == 30)
            #expect(summary.counters.requests == 30)
            #expect(emulator.stats.repeatedAnswers == 0)
            #expect(emulator.stats.peakConcurrency <= 8)
            try expectOwnAnswers(fixture, count: 30)
        }
        // A second run has nothing to do.
        try await Emulator.withRunning(configuration()) { emulator in
            let (summary, _) = try await run(fixture, emulator)
            #expect(summary.counters.requests == 0)
            #expect(emulator.stats.requests == 0)
        }
    }

    @Test func serverErrorsAndDroppedConnectionsAreRetriedUntilEveryRowSucceeds() async throws {
        let fixture = try await Fixture(yaml: "limits: {timeout: 5}")
        _ = try await fixture.load(prompts(40))
        try await Emulator.withRunning(configuration { $0.faultRate = 0.15; $0.dropRate = 0.05; $0.seed = 7 }) { emulator in
            let (summary, _) = try await run(fixture, emulator, maxAttempts: 20)
            #expect(summary.counts.succeeded == 40)
            #expect(summary.counters.retries > 0)
            let stats = emulator.stats
            #expect((stats.byStatus["500"] ?? 0) + (stats.byStatus["503"] ?? 0) > 0)
            try expectOwnAnswers(fixture, count: 40)
        }
    }

    @Test func aTokenRateLimitIsHonouredWithoutSendingInsideRetryAfter() async throws {
        let fixture = try await Fixture(yaml: "request: {max_tokens: 72}")
        _ = try await fixture.load(prompts(40))
        // 40 requests of ~78 tokens (3,120) against 2,400 TPM, refilled at 40 tokens a second:
        // the bucket runs dry unless sending all 40 takes longer than 18 s, which even a loaded
        // machine does not; the last rows meet 429s for several seconds.
        try await Emulator.withRunning(configuration { $0.tokensPerMinute = 2400 }) { emulator in
            let (summary, _) = try await run(fixture, emulator, maxAttempts: 50)
            #expect(summary.counts.succeeded == 40)
            let stats = emulator.stats
            #expect(stats.throttled > 0, "the limit was reached")
            #expect(stats.retriesInsideRetryAfter == 0, "no row was sent again before its own Retry-After ran out")
            // Once a 429 reaches the pool nobody sends: inside one window, at most the requests
            // the other workers had already launched (a timing figure, so bounded, not zero).
            #expect(stats.maxRequestsInsideOneRetryAfter <= 7, "the whole pool waited out every Retry-After: \(stats.requestsInsideRetryAfter) inside")
            #expect(summary.counters.throttled == stats.throttled)
        }
    }

    @Test func shortLivedTokensFailNoRow() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(120))
        // 8 s tokens over a run of about 9 s: at least one refresh, and a last-quarter margin
        // (2 s) that a request in flight clears even while the whole suite loads both cores
        // (the suite's first seconds, when every test starts at once, delay a step by up to 2 s:
        // only the first token lives through them, and it still has 6 s to go).
        try await Emulator.withRunning(configuration { $0.tokenTTL = 8; $0.latencyMs = 300 }) { emulator in
            let (summary, _) = try await run(fixture, emulator, bearer: true, concurrency: 4)
            #expect(summary.counts.succeeded == 120)
            #expect(emulator.stats.byStatus["401"] == nil, "no request went out with an expired token")
            #expect(summary.tokenRequests >= 2)
            #expect(summary.tokenRequests == emulator.stats.totalTokenRequests)
        }
    }

    @Test func contentFilteredRowsFailWithTheirBodyKept() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(5) + "\n{\"id\": \"bad\", \"prompt\": \"please BLOCKME\"}")
        try await Emulator.withRunning(configuration()) { emulator in
            let (summary, _) = try await run(fixture, emulator)
            #expect(summary.exitStatus == .rowsFailed)
            #expect(summary.counts.succeeded == 5 && summary.counts.failed == 1)
            #expect(summary.counters.requests == 6, "a 400 is not retried")
            let errors = fixture.directory.jsonLines("out/test.errors.jsonl")
            #expect(errors.count == 1)
            #expect(errors.first?["error"]?["code"]?.stringValue == "content_filter")
            #expect(errors.first?["response"]?["body"]?["error"]?["innererror"]?["code"]?.stringValue == "ResponsibleAIPolicyViolation")
        }
    }

    @Test func permissionDeniedStopsQuicklyAndARerunWithTheRoleFinishes() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(50))
        try await Emulator.withRunning(configuration { $0.clients[0].hasRole = false }) { emulator in
            let (summary, _) = try await run(fixture, emulator, bearer: true)
            #expect(summary.exitStatus == .stopped)
            guard case .fatal(let condition) = summary.stop else { Issue.record("expected a fatal stop"); return }
            #expect(condition.message.contains("Cognitive Services OpenAI User"))
            #expect(summary.counts.pending == 50, "rows stay pending")
            #expect(emulator.stats.requests <= 8, "at most one request per worker")
            emulator.update { $0.clients[0].hasRole = true }
            let (again, _) = try await run(fixture, emulator, bearer: true)
            #expect(again.exitStatus == .success)
            #expect(again.counts.succeeded == 50)
        }
    }

    @Test func unknownDeploymentAndExhaustedQuotaStopTheRun() async throws {
        let missing = try await Fixture(yaml: "deployment: gpt-9")
        _ = try await missing.load(prompts(3))
        try await Emulator.withRunning(configuration()) { emulator in
            let (summary, _) = try await run(missing, emulator)
            guard case .fatal(let condition) = summary.stop else { Issue.record("expected a fatal stop"); return }
            #expect(condition.message.contains("deployment 'gpt-9' does not exist"))
            #expect(summary.counts.pending == 3)
        }
        let quota = try await Fixture()
        _ = try await quota.load(prompts(3))
        try await Emulator.withRunning(configuration { $0.fixedRetryAfter = 86_400 }) { emulator in
            let (summary, _) = try await run(quota, emulator)
            #expect(summary.exitStatus == .stopped)
            guard case .fatal(let condition) = summary.stop else { Issue.record("expected a fatal stop"); return }
            #expect(condition.message.contains("limits.max_retry_wait"))
            #expect(summary.counts.pending == 3)
        }
    }

    @Test func aRowThatKeepsFailingEndsFailedAfterMaxAttempts() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(2))
        try await Emulator.withRunning(configuration { $0.faultRate = 1 }) { emulator in
            let (summary, _) = try await run(fixture, emulator, maxAttempts: 3)
            #expect(summary.counts.failed == 2)
            #expect(emulator.stats.requests == 6)
            let errors = fixture.directory.jsonLines("out/test.errors.jsonl")
            #expect(errors.first?["error"]?["attempts"]?.intValue == 3)
            #expect(errors.first?["error"]?["message"]?.stringValue?.hasPrefix("gave up after 3 attempts") == true)
        }
    }

    @Test func anInterruptReleasesInFlightRowsAndARerunFinishes() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(40))
        try await Emulator.withRunning(configuration { $0.latencyMs = 300 }) { emulator in
            let control = RunControl()
            Task {
                while emulator.stats.requests < 4 { try await Task.sleep(for: .milliseconds(10)) }
                await control.stop(.interrupted)
            }
            let (summary, _) = try await run(fixture, emulator, concurrency: 4, control: control)
            #expect(summary.exitStatus == .interrupted)
            #expect(summary.counts.running == 0, "nothing is left leased")
            #expect(summary.counts.pending > 0)
            let (again, _) = try await run(fixture, emulator)
            #expect(again.counts.succeeded == 40)
            #expect(emulator.stats.repeatedAnswers == 0)
        }
    }

    @Test func twoRunnersShareTheWorkWithoutDoingARowTwice() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(60))
        try await Emulator.withRunning(configuration { $0.latencyMs = 20 }) { emulator in
            async let first = run(fixture, emulator, concurrency: 4)
            async let second = run(fixture, emulator, concurrency: 4)
            let (a, b) = try await (first, second)
            #expect(a.0.counters.succeeded + b.0.counters.succeeded == 60)
            #expect(a.0.counters.succeeded > 0 && b.0.counters.succeeded > 0)
            #expect(emulator.stats.requests == 60)
            #expect(emulator.stats.repeatedAnswers == 0)
        }
    }

    @Test func aTokenBudgetStopsTheRunBeforeItIsPassed() async throws {
        let fixture = try await Fixture(yaml: "request: {max_tokens: 20}\nlimits: {max_tokens_total: 300}")
        _ = try await fixture.load(prompts(40))
        try await Emulator.withRunning(configuration()) { emulator in
            let (summary, _) = try await run(fixture, emulator, concurrency: 2)
            #expect(summary.exitStatus == .stopped)
            guard case .fatal(let condition) = summary.stop else { Issue.record("expected a stop"); return }
            #expect(condition.message.contains("max_tokens_total = 300"))
            #expect(summary.counts.promptTokens + summary.counts.completionTokens <= 300)
            #expect(summary.counts.pending > 0)
        }
    }
}
