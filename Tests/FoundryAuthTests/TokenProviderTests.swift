import AsyncHTTPClient
import Foundation
import Synchronization
import Testing
@testable import FoundryAuth
@testable import FoundryEmulator

@Suite struct TokenProviderTests {
    @Test func twoHundredConcurrentCallersCauseOneTokenRequest() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let provider = TokenProvider(credential: emulator.secretCredential())
            let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<200 { group.addTask { try await provider.token().token } }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(tokens.count == 1)
            #expect(emulator.stats.totalTokenRequests == 1)
            #expect(await provider.requests == 1)
        }
    }

    @Test func shortLivedTokensAreRefreshedAheadAndCallersAlwaysHoldAValidOne() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.tokenTTL = 2 }) { emulator in
            let provider = TokenProvider(credential: emulator.secretCredential())
            let deadline = Date().addingTimeInterval(5)
            let expiredHandedOut = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        var expired = 0
                        while Date() < deadline {
                            // Judged at the moment of asking: on a busy machine the emulator in this
                            // process may itself be slow to answer, which is not the provider's doing.
                            let asked = Date()
                            let token = try await provider.token()
                            if token.expiresOn <= asked { expired += 1 }
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        return expired
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(expiredHandedOut == 0)
            // Refreshing at half the 2 s lifetime: about one request a second, not one per worker.
            let requests = emulator.stats.totalTokenRequests
            // At least one refresh after the first token; the upper bound is the point.
            #expect(requests >= 2 && requests <= 8, "\(requests) token requests")
        }
    }

    @Test func refreshStartsInsideTheWindowWhileCallersKeepTheOldToken() async throws {
        let clock = TestClock()
        let credential = ScriptedCredential(clock: clock)
        credential.state.withLock { $0.lifetime = 1000 }
        let provider = TokenProvider(credential: credential, now: { clock.now() })
        #expect(try await provider.token().token == "token-1")
        clock.advance(600)
        #expect(try await provider.token().token == "token-1", "outside the 300 s window: no refresh")
        #expect(credential.calls == 1)
        clock.advance(150)  // 250 s left: inside the window
        #expect(try await provider.token().token == "token-1", "the caller does not wait for the refresh")
        try await waitUntil { credential.calls == 2 }
        try await waitUntil { (try? await provider.token().token) == "token-2" }
    }

    @Test func aFailedBackgroundRefreshFailsNobodyAndIsRetriedLater() async throws {
        let clock = TestClock()
        let credential = ScriptedCredential(clock: clock)
        credential.state.withLock { $0.lifetime = 100 }
        let provider = TokenProvider(credential: credential, retryDelay: 30, now: { clock.now() })
        _ = try await provider.token()
        credential.state.withLock { $0.failing = true }
        clock.advance(60)  // window is 50 s: refresh starts and fails
        #expect(try await provider.token().token == "token-1")
        try await waitUntil { credential.calls == 2 }
        try await waitUntil { await provider.inFlight == nil }
        clock.advance(10)
        #expect(try await provider.token().token == "token-1")
        #expect(credential.calls == 2, "no new attempt inside the 30 s back-off")
        credential.state.withLock { $0.failing = false }
        clock.advance(25)
        _ = try await provider.token()
        try await waitUntil { (try? await provider.token().token) == "token-3" }
    }

    @Test func withNoValidTokenCallersShareOneFailure() async throws {
        let clock = TestClock()
        let credential = ScriptedCredential(clock: clock)
        credential.state.withLock { $0.failing = true }
        let provider = TokenProvider(credential: credential, now: { clock.now() })
        let failures = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<20 { group.addTask { (try? await provider.token()) == nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(failures == 20)
        #expect(credential.calls == 1)
    }

    @Test func aStormOf401sFromSixtyFourWorkersCausesOneRefresh() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let provider = TokenProvider(credential: emulator.secretCredential())
            let first = try await provider.token()
            let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        await provider.invalidate(first)
                        return try await provider.token().token
                    }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(!tokens.contains(first.token))
            #expect(tokens.count == 1)
            #expect(emulator.stats.totalTokenRequests == 2)
        }
    }

    @Test func anAccessTokenNeverPrintsItself() {
        let token = AccessToken(token: "eyJ.secret.token", expiresOn: Date())
        #expect(!"\(token)".contains("secret"))
        #expect(!String(reflecting: token).contains("secret"))
    }
}

/// Polls a condition that another task will make true; fails the test after 5 s.
func waitUntil(_ condition: () async -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not met within 5 s", sourceLocation: sourceLocation)
}
