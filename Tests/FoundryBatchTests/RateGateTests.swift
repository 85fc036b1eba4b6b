import Foundation
import FoundryTestSupport
import Synchronization
import Testing
@testable import FoundryBatch

@Suite struct RateGateTests {
    @Test func aThrottleHalvesTheLimitAndSuccessesClimbBackToTheCeiling() async throws {
        let gate = RateGate(concurrency: 16, requestsPerMinute: nil, tokensPerMinute: nil)
        try await gate.enter(tokens: 1)
        await gate.leave(.throttled(retryAfter: 0))
        #expect(await gate.currentLimit == 8)
        for _ in 0..<200 {
            try await gate.enter(tokens: 1)
            await gate.leave(.success(remainingRequests: nil, remainingTokens: nil, estimate: 1))
        }
        #expect(await gate.currentLimit == 16, "climbs back, never above limits.concurrency")
        try await gate.enter(tokens: 1)
        await gate.leave(.success(remainingRequests: nil, remainingTokens: 5, estimate: 50))
        #expect(await gate.currentLimit == 14, "eases off when the service's remaining tokens run low")
    }

    @Test func aSharedQuotaKeepsTheBurstOnceAndRefillsAtTheShare() async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let now: @Sendable () -> Date = { clock.withLock { $0 } }
        let alone = RateGate(concurrency: 64, requestsPerMinute: nil, tokensPerMinute: 6000, now: now)
        #expect(try await alone.tryEnter(tokens: 3000) == 0)
        await alone.setShare(0.5)
        #expect(try await alone.tryEnter(tokens: 3000) == 0, "what was in the bucket stays when another run joins")
        let wait = try await alone.tryEnter(tokens: 50)
        #expect(abs(wait - 1) < 0.01, "then it refills at half the rate: 50 a second, got \(wait)")
        let joining = RateGate(concurrency: 64, requestsPerMinute: nil, tokensPerMinute: 6000, now: now)
        await joining.setShare(0.5, startEmpty: true)
        #expect(try await joining.tryEnter(tokens: 50) > 0, "a run that joins spends none of the burst")
        clock.withLock { $0 += 60 }
        #expect(try await joining.tryEnter(tokens: 3000) == 0)
        #expect(try await joining.tryEnter(tokens: 1) > 0, "its bucket holds half the minute")
    }

    @Test func aQuotaTheJobWasNotToldIsLearnedFromATokenThrottle() async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let gate = RateGate(concurrency: 8, requestsPerMinute: nil, tokensPerMinute: nil, now: { clock.withLock { $0 } })
        #expect(await gate.tokensPerMinute == nil)
        // 60 tokens short, and 60 ms to wait: the service refills 1,000 tokens a second.
        await gate.learnTokenRate(cost: 80, remaining: 20, retryAfter: 0.06)
        let learned = try #require(await gate.tokensPerMinute)
        #expect(abs(learned - 58_200) < 1, "3% under 60,000 a minute, got \(learned)")
        #expect(try await gate.tryEnter(tokens: 80) > 0, "the service's bucket is empty: so is ours")
        clock.withLock { $0 += 0.1 }
        #expect(try await gate.tryEnter(tokens: 80) == 0, "97 tokens refilled in 0.1 s")
        await gate.leave(.success(remainingRequests: nil, remainingTokens: 50_000, estimate: 80))
        #expect(abs((await gate.tokensPerMinute ?? 0) - learned * 1.005) < 1, "plenty left at the service: climb a little")
        await gate.learnTokenRate(cost: 80, remaining: 0, retryAfter: 1)
        #expect(abs((await gate.tokensPerMinute ?? 0) - 80 * 60 * 0.97) < 1, "a later 429 lowers it at once")
        let told = RateGate(concurrency: 8, requestsPerMinute: nil, tokensPerMinute: 6000)
        await told.learnTokenRate(cost: 80, remaining: 0, retryAfter: 1)
        #expect(await told.tokensPerMinute == 6000, "a configured quota is the job's word")
    }

    @Test func aPauseHoldsEveryWorker() async throws {
        let gate = RateGate(concurrency: 4, requestsPerMinute: nil, tokensPerMinute: nil)
        await gate.pause(for: 0.3)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { try await gate.enter(tokens: 1) } }
            try await group.waitForAll()
        }
        #expect(ContinuousClock.now - started >= .milliseconds(290))
    }

    @Test func bucketsHoldAMinuteAndALargeRequestStillFits() {
        let start = Date(timeIntervalSince1970: 0)
        var bucket = PacingBucket(perMinute: 600, start: start)
        #expect(bucket.wait(for: 600, now: start) == 0, "starts full")
        bucket.take(600, now: start)
        #expect(bucket.wait(for: 100, now: start) == 10, "refills 10 tokens a second")
        #expect(bucket.wait(for: 5000, now: start) == 60, "larger than a minute's budget: waits for a full bucket, never forever")
    }
}
