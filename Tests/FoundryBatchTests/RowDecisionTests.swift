import Foundation
import NIOHTTP1
import Testing
@testable import FoundryBatch

/// The runner's per-answer decision, called directly: every branch without a server.
@Suite struct RowDecisionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let settings: RowDecision.Settings = {
        var limits = JobFile.Limits()
        limits.maxRetryWait = 60
        limits.maxAttempts = 3
        return RowDecision.Settings(limits: limits)
    }()

    func row(attempts: Int = 0) -> ClaimedRow {
        ClaimedRow(seq: 7, id: "r7", variant: "", api: .chat, deployment: "gpt-5-mini", body: "{}", attempts: attempts, estimatedTokens: 40)
    }

    func reading(_ status: Int, _ headers: HTTPHeaders = [:], body: String = "{}") -> RowDecision.Reading {
        let answer = ServiceAnswer.response(status: status, headers: headers, body: Array(body.utf8), latencyMs: 5)
        return RowDecision.Reading(answer, row: row(), url: "https://x/openai/v1/chat/completions", clientRequestID: "cid", now: now)
    }

    func decide(
        _ reading: RowDecision.Reading, attempts: Int = 0, credential: RowDecision.Credential = .apiKey(variable: "AZURE_OPENAI_API_KEY"),
        pacing: RowDecision.Pacing? = nil
    ) -> RowDecision.Action {
        RowDecision.decide(reading, row: row(attempts: attempts), settings: settings, credential: credential, pacing: pacing, now: now) { _ in 2 }
    }

    func pacing(wait: TimeInterval = 1, jobFor: TimeInterval = 0, rowFor: TimeInterval = 0) -> RowDecision.Pacing {
        RowDecision.Pacing(job: RateGate.Throttle(wait: wait, throttledFor: jobFor), rowThrottledFor: rowFor)
    }

    @Test func aSuccessIsCommittedWithTheServicesRemainingCounts() {
        let answer = reading(
            200, ["x-ratelimit-remaining-requests": "12", "X-RateLimit-Remaining-Tokens": "900 tokens", "apim-request-id": "req-1"],
            body: #"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#
        )
        #expect(answer.throttleDelay == nil, "no throttle clocks are read for a success")
        guard case .commit(.succeeded(let record), let cid, let gate, let counts) = decide(answer) else {
            Issue.record("a success is committed")
            return
        }
        #expect(cid == "cid" && record.requestID == "req-1" && record.totalTokens == 7 && !counts)
        #expect(gate == .success(remainingRequests: 12, remainingTokens: 900, estimate: 40))
    }

    @Test func a429PacesTheJobWithoutUsingAnAttempt() {
        let answer = reading(429, ["retry-after": "5"])
        #expect(answer.throttleDelay == .some(5))
        let action = decide(answer, attempts: 2, pacing: pacing(wait: 5))
        guard case .commit(.retry(let at, let error, _, let countsAsAttempt), _, let gate, let counts) = action else {
            Issue.record("a 429 is retried, got \(action)")
            return
        }
        #expect(at == now + 5 && !countsAsAttempt && counts && error.statusCode == 429)
        #expect(gate == .throttled(retryAfter: 5))
    }

    @Test func ourOwnBackOffNeverWaitsLongerThanTheJobAllows() {
        let action = decide(reading(429), pacing: pacing(wait: 500))
        guard case .commit(.retry(let at, _, _, _), _, .throttled(let wait), _) = action else {
            Issue.record("a 429 without Retry-After is retried, got \(action)")
            return
        }
        #expect(wait == 60 && at == now + 60)
    }

    @Test func waitsBeyondMaxRetryWaitStopTheRun() {
        guard case .park(let asked, let until) = decide(reading(429, ["retry-after": "3600"]), pacing: pacing()) else {
            Issue.record("a Retry-After beyond max_retry_wait parks the target")
            return
        }
        #expect(asked.message.contains("3600 s") && asked.message.contains("Run the job again after"))
        #expect(until == now + 3600, "the target is parked until its Retry-After ends")
        guard case .park(let only429, nil) = decide(reading(429), pacing: pacing(jobFor: 61)) else {
            Issue.record("nothing but 429 for longer than max_retry_wait parks the target")
            return
        }
        #expect(only429.message.contains("nothing but 429"))
        guard case .park = decide(reading(503, ["retry-after": "120"])) else {
            Issue.record("a 503 asking for more than max_retry_wait parks the target")
            return
        }
    }

    @Test func aRowThrottledForTooLongFailsAlone() {
        let action = decide(reading(429), pacing: pacing(rowFor: 4 * 60 + 1))
        guard case .commit(.failed(let error, _), _, .throttled, let counts) = action else {
            Issue.record("the row fails, got \(action)")
            return
        }
        #expect(error.message.hasPrefix("throttled (HTTP 429) for 241 s") && !counts)
    }

    @Test func transientFailuresBackOffUntilTheLastAttempt() {
        guard case .commit(.retry(let at, _, _, true), _, .other, false) = decide(reading(500), attempts: 0) else {
            Issue.record("a 500 is retried")
            return
        }
        #expect(at == now + 2, "the injected back-off")
        guard case .commit(.retry(let zero, _, _, _), _, _, _) = decide(reading(503, ["retry-after": "0"])) else {
            Issue.record("a 503 is retried")
            return
        }
        #expect(zero == now + 2, "a Retry-After of 0 is no pacing")
        guard case .commit(.failed(let error, _), _, _, _) = decide(reading(500), attempts: 2) else {
            Issue.record("the last attempt fails the row")
            return
        }
        #expect(error.message.hasPrefix("gave up after 3 attempts"))
    }

    @Test func a401RefreshesATokenOnceThenStops() {
        let refused = reading(401, body: #"{"error":{"code":"401","message":"expired"}}"#)
        #expect(decide(refused, credential: .token(refreshed: false)) == .refreshToken)
        guard case .park(let again, nil) = decide(refused, credential: .token(refreshed: true)) else {
            Issue.record("a refused refreshed token parks the target")
            return
        }
        #expect(again.message.contains("even after a refresh"))
        guard case .park(let key, nil) = decide(refused, credential: .apiKey(variable: "AZURE_OPENAI_API_KEY")) else {
            Issue.record("a refused key parks the target")
            return
        }
        #expect(key.message.contains("AZURE_OPENAI_API_KEY"))
    }

    @Test func permanentAndFatalAnswers() {
        guard case .commit(.failed(let error, let response), _, .other, false) = decide(reading(400, body: #"{"error":{"code":"content_filter","message":"no"}}"#)) else {
            Issue.record("a 400 fails the row")
            return
        }
        #expect(error.code == "content_filter" && response?.statusCode == 400)
        guard case .park(let condition, nil) = decide(reading(404, body: #"{"error":{"code":"DeploymentNotFound","message":"x"}}"#)) else {
            Issue.record("a missing deployment parks the target")
            return
        }
        #expect(condition.message.contains("gpt-5-mini"))
    }
}
