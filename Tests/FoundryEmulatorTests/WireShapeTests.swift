import FoundryBatch
import Foundation
import NIOHTTP1
import Testing
@testable import FoundryEmulator

/// The emulator's answers, decoded with the Codable types the runner reads them with.
@Suite struct WireShapeTests {
    let key = [("api-key", "test-key")]

    func decode(_ answer: Wire.Answer) throws -> ServiceBody {
        try #require(ServiceBody.decode(Array(answer.body)))
    }

    @Test func successAnswersCarryUsageInEachAPIsSpelling() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let chatBody = try decode(try await emulator.wire.json("/openai/v1/chat/completions", chat("Hello there", maxTokens: 50), headers: key))
            #expect(chatBody.usage?.promptTokens == EmulatorAnswer.tokens("Hello there"))
            #expect((chatBody.usage?.completionTokens ?? 0) > 0)
            #expect(chatBody.error == nil)

            let responses = try decode(try await emulator.wire.json("/openai/v1/responses", ["model": "gpt-4.1", "input": "Hello there"], headers: key))
            #expect(responses.usage?.promptTokens == EmulatorAnswer.tokens("Hello there"), "input_tokens read as prompt tokens")
            #expect((responses.usage?.completionTokens ?? 0) > 0, "output_tokens read as completion tokens")

            let embeddings = try decode(
                try await emulator.wire.json("/openai/v1/embeddings", ["model": "text-embedding-3-small", "input": "Hello there"], headers: key)
            )
            #expect(embeddings.usage?.promptTokens == EmulatorAnswer.tokens("Hello there"))
            #expect(embeddings.usage?.totalTokens == embeddings.usage?.promptTokens)
        }
    }

    @Test func errorAnswersCarryTheCodesTheRunnerClassifiesBy() async throws {
        try await Emulator.withRunning(.testing { $0.tokensPerMinute = 10 }) { emulator in
            let filtered = try await emulator.wire.json("/openai/v1/chat/completions", chat("BLOCKME"), headers: key)
            #expect(try decode(filtered).error?.code == "content_filter")
            let missing = try await emulator.wire.json("/openai/v1/chat/completions", chat("x", model: "nope"), headers: key)
            #expect(try decode(missing).error?.code == "DeploymentNotFound")
            let throttled = try await emulator.wire.json("/openai/v1/chat/completions", chat("x", maxTokens: 500), headers: key)
            #expect(throttled.status == 429)
            #expect(try decode(throttled).error?.code == "429", "Azure sends the code as text")
            let verdict = RetryPolicy.classify(
                .response(status: 429, headers: HTTPHeaders(throttled.headers.map { ($0.name, $0.value) }), body: Array(throttled.body), latencyMs: 1),
                deployment: "gpt-5-mini", url: emulator.baseURL
            )
            guard case .retry(let delay, let error, let isThrottled) = verdict else {
                Issue.record("a 429 is retried, got \(verdict)")
                return
            }
            #expect(isThrottled)
            #expect(error.code == "rate_limited")
            #expect((delay ?? 0) > 1, "the delay comes from retry-after-ms")
        }
    }
}
