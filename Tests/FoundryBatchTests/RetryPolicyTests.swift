import Foundation
import NIOHTTP1
import FoundryTestSupport
import Testing
@testable import FoundryBatch

@Suite struct RetryPolicyTests {
    func answer(_ status: Int, _ headers: [(String, String)] = [], body: String = "") -> ServiceAnswer {
        .response(status: status, headers: HTTPHeaders(headers), body: Array(body.utf8), latencyMs: 1)
    }

    func classify(_ answer: ServiceAnswer) -> RetryPolicy.Verdict {
        RetryPolicy.classify(answer, deployment: "gpt-5-mini", url: "https://x.openai.azure.com/openai/v1/chat/completions")
    }

    @Test func retryAfterComesFromEverySourceInOrder() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(RetryAfter.delay(headers: ["retry-after-ms": "1500", "retry-after": "9"], body: nil) == 1.5)
        #expect(RetryAfter.delay(headers: ["x-ms-retry-after-ms": "250"], body: nil) == 0.25)
        #expect(RetryAfter.delay(headers: ["Retry-After": "7"], body: nil) == 7)
        let date = "Fri, 15 Jan 2027 08:00:10 GMT"
        let expected = RetryAfter.httpDate(date)!.timeIntervalSince(now)
        #expect(RetryAfter.delay(headers: ["retry-after": date], body: nil, now: now) == expected)
        #expect(RetryAfter.delay(headers: [:], body: "... Please retry after 6 seconds. Please go here ...") == 6)
        #expect(RetryAfter.delay(headers: [:], body: "Rate limit reached. Please try again in 20ms.") == 0.02)
        #expect(RetryAfter.delay(headers: [:], body: "nothing here") == nil)
    }

    @Test(arguments: [408, 409, 429, 500, 502, 503, 504])
    func transientStatusesAreRetried(_ status: Int) {
        guard case .retry(_, let error, let throttled) = classify(answer(status)) else {
            Issue.record("\(status) should be retried")
            return
        }
        #expect(throttled == (status == 429))
        #expect(error.statusCode == status)
    }

    @Test(arguments: [400, 413, 422, 418])
    func clientErrorsFailTheRowForGood(_ status: Int) {
        guard case .permanent = classify(answer(status)) else {
            Issue.record("\(status) should be permanent")
            return
        }
    }

    @Test func xShouldRetryWins() {
        guard case .permanent = classify(answer(503, [("x-should-retry", "false")])) else { Issue.record("false wins"); return }
        guard case .retry = classify(answer(400, [("x-should-retry", "true")])) else { Issue.record("true wins"); return }
    }

    @Test func conditionsEveryRowWouldHitStopTheRun() {
        let denied = classify(answer(401, body: #"{"error":{"code":"PermissionDenied","message":"The principal `x` lacks the required data action"}}"#))
        guard case .fatal(let condition) = denied else { Issue.record("PermissionDenied is fatal"); return }
        #expect(condition.message.contains("Cognitive Services OpenAI User"))
        guard case .unauthorized = classify(answer(401, body: #"{"error":{"code":"401","message":"expired"}}"#)) else {
            Issue.record("a plain 401 refreshes the token first")
            return
        }
        guard case .fatal = classify(answer(404, body: #"{"error":{"code":"DeploymentNotFound","message":"no"}}"#)) else {
            Issue.record("DeploymentNotFound is fatal")
            return
        }
        guard case .fatal = classify(answer(403)) else { Issue.record("403 is fatal"); return }
    }

    @Test func rowErrorCodesAreStable() {
        guard case .permanent(let filtered) = classify(answer(400, body: #"{"error":{"code":"content_filter","message":"filtered"}}"#)) else {
            Issue.record("content filter is permanent")
            return
        }
        #expect(filtered.code == "content_filter")
        #expect(filtered.message == "filtered")
        guard case .retry(_, let throttled, _) = classify(answer(429, body: #"{"error":{"code":"429","message":"slow"}}"#)) else { return }
        #expect(throttled.code == "rate_limited")
        guard case .retry(_, let timeout, _) = classify(.timedOut(latencyMs: 1)) else { return }
        #expect(timeout.code == "timeout")
        guard case .retry(_, let dropped, _) = classify(.connectionFailed(reason: "reset", latencyMs: 1)) else { return }
        #expect(dropped.code == "connection_error")
    }

    @Test func backoffGrowsAndIsCapped() {
        #expect(RetryPolicy.backoff(attempt: 1, random: 1) == 1)
        #expect(RetryPolicy.backoff(attempt: 4, random: 1) == 8)
        #expect(RetryPolicy.backoff(attempt: 20, random: 1) == 60)
        #expect(RetryPolicy.backoff(attempt: 3, random: 0.5) == 2)
    }

    @Test func targetURLsForEachStyle() {
        let v1 = ServiceTarget(baseURL: "https://r.openai.azure.com/", apiVersion: nil, authorization: .none)
        #expect(v1.url(api: .chat, deployment: "d") == "https://r.openai.azure.com/openai/v1/chat/completions")
        let versioned = ServiceTarget(baseURL: "https://r.openai.azure.com", apiVersion: "2024-10-21", authorization: .none)
        #expect(versioned.url(api: .embeddings, deployment: "e 1") == "https://r.openai.azure.com/openai/deployments/e%201/embeddings?api-version=2024-10-21")
        let compatible = ServiceTarget(baseURL: "http://localhost:8000/v1", apiVersion: nil, authorization: .none)
        #expect(compatible.url(api: .responses, deployment: "m") == "http://localhost:8000/v1/responses")
    }
}
