import Foundation
import NIOHTTP1
import Testing
@testable import FoundryEmulator

@Suite struct FoundryTests {
    let key = [("api-key", "test-key")]

    @Test func chatOnV1WithBearerAnswersInOpenAIsShape() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let token = try await emulator.demoToken()
            let answer = try await emulator.wire.json(
                "/openai/v1/chat/completions", chat("What is the capital of France?"),
                headers: [("Authorization", "Bearer \(token)"), ("x-ms-client-request-id", "cid-1")]
            )
            #expect(answer.status == 200)
            #expect(answer.headers.first(name: "x-ms-client-request-id") == "cid-1")
            #expect(answer.headers.first(name: "apim-request-id")?.isEmpty == false)
            #expect(answer.json["object"] as? String == "chat.completion")
            #expect(answer.json["model"] as? String == "gpt-5-mini")
            let choice = try #require((answer.json["choices"] as? [[String: Any]])?.first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["content"] as? String == EmulatorAnswer.text(for: "What is the capital of France?"))
            let usage = try #require(answer.json["usage"] as? [String: Int])
            #expect(usage["prompt_tokens"] == EmulatorAnswer.tokens("What is the capital of France?"))
            #expect(usage["total_tokens"] == (usage["prompt_tokens"] ?? 0) + (usage["completion_tokens"] ?? 0))
        }
    }

    @Test func listingDeploymentsKeepsTheInFlightCountRight() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let key = [("api-key", "test-key")]
            for _ in 0..<3 { _ = try await emulator.wire.send(.GET, "/openai/deployments?api-version=2022-12-01", headers: key) }
            _ = try await emulator.wire.json("/openai/v1/chat/completions", chat("one at a time"), headers: key)
            #expect(emulator.stats.peakConcurrency == 1, "a listing ended a request it never began")
            #expect(emulator.stats.requests == 4)
        }
    }

    @Test func differentPromptsGetDifferentAnswers() {
        #expect(EmulatorAnswer.text(for: "a") != EmulatorAnswer.text(for: "b"))
        #expect(EmulatorAnswer.text(for: "a") == EmulatorAnswer.text(for: "a"))
    }

    @Test func deploymentPathsNeedAnAPIVersion() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let ok = try await emulator.wire.json("/openai/deployments/gpt-4.1/chat/completions?api-version=2024-10-21", chat("hi"), headers: key)
            #expect(ok.status == 200)
            #expect(ok.json["model"] as? String == "gpt-4.1")
            let missing = try await emulator.wire.json("/openai/deployments/gpt-4.1/chat/completions", chat("hi"), headers: key)
            #expect(missing.status == 404)
            let embeddings = try await emulator.wire.json(
                "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", ["input": ["a", "b"]], headers: key
            )
            #expect((embeddings.json["data"] as? [[String: Any]])?.count == 2)
            let list = try await emulator.wire.send(.GET, "/openai/deployments?api-version=2022-12-01", headers: key)
            #expect((list.json["data"] as? [[String: Any]])?.contains { $0["id"] as? String == "gpt-5-mini" } == true)
        }
    }

    @Test func responsesAPIShape() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let answer = try await emulator.wire.json("/openai/v1/responses", ["model": "gpt-5-mini", "input": "Hello", "instructions": "Be brief"], headers: key)
            #expect(answer.status == 200)
            #expect(answer.json["object"] as? String == "response")
            let output = try #require((answer.json["output"] as? [[String: Any]])?.first)
            let content = try #require((output["content"] as? [[String: Any]])?.first)
            #expect(content["text"] as? String == EmulatorAnswer.text(for: "Hello"))
            #expect((answer.json["usage"] as? [String: Int])?["input_tokens"] != nil)
        }
    }

    /// Quoted from Azure OpenAI: a bad key, a bad token, a principal without the role, a missing deployment.
    @Test func authorisationErrorsUseAzuresBodies() async throws {
        var denied = EmulatorConfiguration.Client(tenantID: EmulatorConfiguration.demoTenantID, clientID: "no-role-app", secret: "s2")
        denied.hasRole = false
        try await Emulator.withRunning(.testing { $0.clients.append(denied) }) { emulator in
            let badKey = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [("api-key", "wrong")])
            #expect(badKey.status == 401)
            #expect((badKey.error["message"] as? String)?.hasPrefix("Access denied due to invalid subscription key") == true)

            let badToken = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [("Authorization", "Bearer abc.def.ghi")])
            #expect(badToken.status == 401)
            #expect((badToken.error["message"] as? String)?.contains("Access token is missing, invalid") == true)

            let noAuth = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [])
            #expect(noAuth.status == 401)

            let token = try await emulator.wire.form(
                "/\(EmulatorConfiguration.demoTenantID)/oauth2/v2.0/token",
                ["grant_type": "client_credentials", "client_id": "no-role-app", "client_secret": "s2", "scope": "https://cognitiveservices.azure.com/.default"]
            ).json["access_token"] as? String ?? ""
            let permission = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [("Authorization", "Bearer \(token)")])
            #expect(permission.status == 401)
            #expect(permission.error["code"] as? String == "PermissionDenied")
            #expect((permission.error["message"] as? String)?.contains("lacks the required data action") == true)

            emulator.update { $0.clients[1].hasRole = true }
            let granted = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [("Authorization", "Bearer \(token)")])
            #expect(granted.status == 200)

            let missing = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi", model: "gpt-9"), headers: key)
            #expect(missing.status == 404)
            #expect(missing.error["code"] as? String == "DeploymentNotFound")
        }
    }

    @Test func anExpiredTokenIsRefused() async throws {
        try await Emulator.withRunning(.testing { $0.tokenTTL = 1 }) { emulator in
            let token = try await emulator.demoToken()
            #expect(try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [("Authorization", "Bearer \(token)")]).status == 200)
            // exp is whole seconds rounded up, so a 1 s token lives up to 2 s.
            try await Task.sleep(for: .milliseconds(2100))
            let late = try await emulator.wire.json("/openai/v1/chat/completions", chat("hi"), headers: [("Authorization", "Bearer \(token)")])
            #expect(late.status == 401)
        }
    }

    @Test func contentFilterRefusesWithTheFilterResult() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", chat("please BLOCKME now"), headers: key)
            #expect(answer.status == 400)
            #expect(answer.error["code"] as? String == "content_filter")
            #expect((answer.error["innererror"] as? [String: Any])?["code"] as? String == "ResponsibleAIPolicyViolation")
        }
    }

    @Test func tokenRateLimitAnswers429WithAzuresHeadersAndText() async throws {
        try await Emulator.withRunning(.testing { $0.tokensPerMinute = 600 }) { emulator in
            // 600 TPM: a bucket of 600 tokens, refilled at 10 per second. Each request costs prompt/4 + 200.
            let first = try await emulator.wire.json("/openai/v1/chat/completions", chat("hello", maxTokens: 200), headers: key)
            #expect(first.status == 200)
            #expect(first.headers.first(name: "x-ratelimit-remaining-tokens") == "398")
            _ = try await emulator.wire.json("/openai/v1/chat/completions", chat("hello", maxTokens: 200), headers: key)
            let third = try await emulator.wire.json("/openai/v1/chat/completions", chat("hello", maxTokens: 300), headers: key)
            #expect(third.status == 429)
            let retryAfter = try #require(third.headers.first(name: "retry-after").flatMap(Int.init))
            let retryAfterMs = try #require(third.headers.first(name: "retry-after-ms").flatMap(Int.init))
            #expect(retryAfter >= 1 && Double(retryAfter) >= Double(retryAfterMs) / 1000)
            #expect(retryAfterMs > 5000 && retryAfterMs < 12000)
            let message = try #require(third.error["message"] as? String)
            #expect(message.hasPrefix("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version v1 have exceeded token rate limit"))
            #expect(message.contains("Please retry after \(retryAfter) seconds."))
            #expect(third.headers.first(name: "x-ratelimit-remaining-requests") == nil, "no RPM limit configured")
            let stats = emulator.stats
            #expect(stats.throttled == 1)
            #expect(stats.byRoute["chat"]?["429"] == 1)
        }
    }

    @Test func requestRateLimitCountsOverTenSecondWindows() async throws {
        try await Emulator.withRunning(.testing { $0.requestsPerMinute = 12 }) { emulator in
            var statuses: [Int] = []
            for _ in 0..<3 { statuses.append(try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key).status) }
            #expect(statuses == [200, 200, 429], "RPM 12 allows 2 per 10 seconds")
            // A request after the 429 (past the 50 ms a request may already be on the wire) but
            // before its Retry-After is counted as a client misbehaving.
            try await Task.sleep(for: .milliseconds(100))
            _ = try await emulator.wire.json("/openai/v1/chat/completions", chat("y"), headers: key)
            #expect(emulator.stats.requestsInsideRetryAfter == 1)
            #expect(emulator.stats.retriesInsideRetryAfter == 0, "another prompt is no early retry")
            // The refused prompt sent again inside its own Retry-After: an early retry, whatever the timing.
            _ = try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key)
            #expect(emulator.stats.requestsInsideRetryAfter == 2 && emulator.stats.maxRequestsInsideOneRetryAfter == 2)
            #expect(emulator.stats.retriesInsideRetryAfter == 1)
        }
    }

    @Test func fixedRetryAfterEmulatesAnExhaustedQuota() async throws {
        try await Emulator.withRunning(.testing { $0.fixedRetryAfter = 86_400 }) { emulator in
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key)
            #expect(answer.status == 429)
            #expect(answer.headers.first(name: "retry-after") == "86400")
        }
    }

    @Test func faultsAreInjected() async throws {
        try await Emulator.withRunning(.testing { $0.faultRate = 1 }) { emulator in
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key)
            #expect([500, 503].contains(answer.status))
        }
        try await Emulator.withRunning(.testing { $0.throttleRate = 1; $0.throttleSeconds = 0.25 }) { emulator in
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key)
            #expect(answer.status == 429)
            #expect(answer.headers.first(name: "retry-after-ms") == "250")
            #expect(answer.headers.first(name: "retry-after") == "1")
        }
        try await Emulator.withRunning(.testing { $0.dropRate = 1 }) { emulator in
            await #expect(throws: (any Error).self) {
                _ = try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key)
            }
        }
        try await Emulator.withRunning(.testing { $0.slowRate = 1; $0.slowSeconds = 0.3 }) { emulator in
            let started = ContinuousClock.now
            let answer = try await emulator.wire.json("/openai/v1/chat/completions", chat("x"), headers: key)
            #expect(answer.status == 200)
            #expect(ContinuousClock.now - started >= .milliseconds(300))
        }
    }

    @Test func statsCountRoutesStatusesConcurrencyAndRepeats() async throws {
        try await Emulator.withRunning(.testing { $0.latencyMs = 50 }) { emulator in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        _ = try await emulator.wire.json("/openai/v1/chat/completions", chat("p\(index % 4)"), headers: key + [("x-ms-client-request-id", "id-\(index % 6)")])
                    }
                }
                try await group.waitForAll()
            }
            let stats = try JSONDecoder().decode(EmulatorStats.self, from: try await emulator.wire.send(.GET, "/emulator/stats").body)
            #expect(stats.requests == 8)
            #expect(stats.byStatus["200"] == 8)
            #expect(stats.peakConcurrency > 1)
            #expect(stats.repeatedAnswers == 4)
            #expect(stats.repeatedClientRequestIDs == 2)
            #expect(stats.maxRequestsPerClientRequestID == 2)
            #expect(stats.inFlight == 0)
        }
    }
}
