import FoundryAuth
import Foundation

/// Paces the workers: the pool-wide 429 pause, the job's RPM and TPM budgets, and the
/// adaptive concurrency limit.
///
/// A worker calls ``enter(tokens:)`` before sending and ``leave(_:)`` after. A 429's
/// Retry-After stops everyone, not only the worker that got it; the concurrency limit is
/// halved on a 429 and climbs back by one per `limit` successes, never above the job's
/// `limits.concurrency`.
public actor RateGate {
    let maximum: Int
    var limit: Double
    var active = 0
    var pausedUntil: Date = .distantPast
    var requests: PacingBucket?
    var tokens: PacingBucket?
    let now: @Sendable () -> Date
    /// Closed when the run stops: nobody waiting here sends again.
    var closed = false
    /// 429 rounds since the last success: a 429 that arrives while no pause is in force
    /// starts a new round. Back-off without a Retry-After grows with them.
    var throttleRounds = 0
    /// The first 429 since the last success.
    var throttledSince: Date?
    /// This process's part of the quota (``setShare(_:startEmpty:)``).
    var share: Double = 1
    /// Whether the token bucket was learned from the service's 429s, not configured.
    var learnedTokens = false

    public init(concurrency: Int, requestsPerMinute: Int?, tokensPerMinute: Int?, now: @escaping @Sendable () -> Date = { Date() }) {
        maximum = concurrency
        limit = Double(concurrency)
        self.now = now
        let start = now()
        // A bucket holds one minute, so a request as large as the whole budget still fits.
        requests = requestsPerMinute.map { PacingBucket(perMinute: Double($0), start: start) }
        tokens = tokensPerMinute.map { PacingBucket(perMinute: Double($0), start: start) }
    }

    /// Waits until this worker may send a request estimated at `tokens`.
    ///
    /// - Throws: `CancellationError` when the task is cancelled or the gate was closed.
    public func enter(tokens cost: Int) async throws {
        while true {
            let wait = try tryEnter(tokens: cost)
            if wait <= 0 { return }
            // Short naps, so a closed gate lets its waiters go at once.
            try await Task.sleep(for: .milliseconds(max(1, Int(min(wait, 0.2) * 1000))))
        }
    }

    /// Enters at once if a request estimated at `tokens` may be sent now (returns 0), else
    /// returns how long until it might: for a pool that tries another target meanwhile.
    ///
    /// - Throws: `CancellationError` when the task is cancelled or the gate was closed.
    public func tryEnter(tokens cost: Int) throws -> TimeInterval {
        try Task.checkCancellation()
        if closed { throw CancellationError() }
        let current = now()
        var wait = pausedUntil.timeIntervalSince(current)
        if wait <= 0, active >= Int(limit.rounded(.down)) { wait = 0.01 }
        if wait <= 0 {
            let requestWait = requests?.wait(for: 1, now: current) ?? 0
            let tokenWait = tokens?.wait(for: Double(cost), now: current) ?? 0
            wait = max(requestWait, tokenWait)
        }
        if wait <= 0 {
            requests?.take(1, now: current)
            tokens?.take(Double(cost), now: current)
            active += 1
            return 0
        }
        return wait
    }

    public enum Outcome: Sendable, Equatable {
        case success(remainingRequests: Int?, remainingTokens: Int?, estimate: Int)
        case throttled(retryAfter: TimeInterval)
        case other
    }

    /// Records how the request went and frees the worker's place.
    public func leave(_ outcome: Outcome) {
        active -= 1
        switch outcome {
        case .success(let remainingRequests, let remainingTokens, let estimate):
            // Near the service's own limit: stop climbing and ease off before it says 429.
            let nearLimit = remainingRequests.map { $0 < 1 } == true || remainingTokens.map { $0 < estimate } == true
            throttleRounds = 0
            throttledSince = nil
            // A learned rate may be short (a Retry-After rounded up to whole seconds): while
            // the service says it has more than three seconds of it left, climb by 0.5% a success.
            if learnedTokens, let remainingTokens, var bucket = tokens, Double(remainingTokens) > bucket.perMinute * 0.05 {
                let current = now()
                bucket.refill(now: current)
                bucket.perMinute *= 1.005
                bucket.rescale(share, now: current, empty: false)
                tokens = bucket
            }
            if nearLimit {
                limit = max(1, limit * 0.9)
            } else {
                limit = min(Double(maximum), limit + 1 / max(limit, 1))
            }
        case .throttled(let retryAfter):
            pause(for: retryAfter)
            limit = max(1, limit / 2)
        case .other:
            break
        }
    }

    /// Stops every worker from sending for `seconds`.
    public func pause(for seconds: TimeInterval) {
        pausedUntil = max(pausedUntil, now().addingTimeInterval(Bounded.seconds(seconds) ?? 0))
    }

    /// How long to wait after a 429, and how long the service has answered only 429s.
    public struct Throttle: Sendable, Equatable {
        /// The service's Retry-After, else a back-off that grows with each 429 round.
        public var wait: TimeInterval
        /// Seconds since the first 429 after the last success.
        public var throttledFor: TimeInterval
    }

    /// Judges a 429 before the worker leaves: nothing is paused yet, so a wait the run will
    /// not take (beyond `limits.max_retry_wait`) never holds the pool.
    public func throttle(serverDelay: TimeInterval?, now current: Date) -> Throttle {
        if current >= pausedUntil { throttleRounds += 1 }
        let since = throttledSince ?? current
        throttledSince = since
        var wait = serverDelay ?? RetryPolicy.backoff(attempt: throttleRounds)
        // A Retry-After of 0 (or a date in the past) that keeps meeting 429s is no pacing at
        // all: from the third round without a success, wait at least the growing back-off.
        if serverDelay != nil, throttleRounds >= 3 { wait = max(wait, RetryPolicy.backoff(attempt: throttleRounds - 2)) }
        return Throttle(wait: wait, throttledFor: current.timeIntervalSince(since))
    }

    /// Lets every waiting worker go with `CancellationError`, now and from now on.
    public func close() {
        closed = true
    }

    /// Paces to `share` of the configured RPM and TPM: the part of a target's quota that is
    /// this process's while `1 / share` processes run the job at once.
    ///
    /// A process that joins a job already running starts with empty buckets (`startEmpty`):
    /// the others have spent the shared minute's burst already.
    public func setShare(_ share: Double, startEmpty: Bool = false) {
        self.share = share
        let current = now()
        requests?.rescale(share, now: current, empty: startEmpty)
        tokens?.rescale(share, now: current, empty: startEmpty)
    }

    /// Learns the service's token rate from a 429 when the job sets no `tokens_per_minute`.
    ///
    /// A token 429 says how long until `cost` fits and (`x-ratelimit-remaining-tokens`) how
    /// many are left: the service refills at `(cost - remaining) / retryAfter` tokens a
    /// second. From then on the gate paces just under that rate, starting empty (the
    /// service's bucket is), instead of meeting a 429 every time its burst runs out.
    /// Later 429s refine the rate: down at once, up by at most a tenth.
    public func learnTokenRate(cost: Int, remaining: Int, retryAfter: TimeInterval) {
        guard tokens == nil || learnedTokens, retryAfter > 0, retryAfter.isFinite, cost > remaining else { return }
        let perSecond = Double(cost - max(remaining, 0)) / retryAfter
        // 3% under the service's rate: the estimate is the service's own charge, and its
        // Retry-After is rounded up, so this errs on the slow side.
        var perMinute = perSecond * 60 * 0.97
        if let current = tokens?.perMinute { perMinute = min(perMinute, current * 1.1) }
        guard perMinute.isFinite, perMinute >= 1 else { return }
        var bucket = PacingBucket(perMinute: perMinute, start: now())
        bucket.rescale(share, now: now(), empty: true)
        tokens = bucket
        learnedTokens = true
    }

    /// The token rate the gate paces to, configured or learned (for tests and progress).
    public var tokensPerMinute: Double? { tokens?.perMinute }

    /// The current concurrency limit (for progress and tests).
    public var currentLimit: Int { Int(limit.rounded(.down)) }
}

/// A token bucket refilled continuously at `perMinute`, holding one minute's worth.
struct PacingBucket {
    /// The configured rate; ``capacity`` and ``perSecond`` are this process's share of it.
    var perMinute: Double
    var capacity: Double
    var perSecond: Double
    var level: Double
    var updated: Date

    init(perMinute: Double, start: Date) {
        self.perMinute = perMinute
        capacity = perMinute
        perSecond = perMinute / 60
        level = perMinute
        updated = start
    }

    /// Keeps `share` of the configured rate. What is in the bucket stays (the process that
    /// joins late starts empty, so together they hold no more than the service's burst); it
    /// refills again once spent below the new capacity.
    mutating func rescale(_ share: Double, now: Date, empty: Bool) {
        refill(now: now)
        let share = min(max(share, 1e-6), 1)
        capacity = perMinute * share
        perSecond = capacity / 60
        if empty { level = 0 }
    }

    mutating func refill(now: Date) {
        // A level above the capacity (kept from a larger share) is spent, not refilled.
        if level < capacity { level = min(capacity, level + max(0, now.timeIntervalSince(updated)) * perSecond) }
        updated = now
    }

    /// Seconds until `cost` fits; a cost above the capacity waits for a full bucket.
    mutating func wait(for cost: Double, now: Date) -> TimeInterval {
        refill(now: now)
        let needed = min(cost, capacity)
        return level >= needed ? 0 : (needed - level) / perSecond
    }

    mutating func take(_ cost: Double, now: Date) {
        refill(now: now)
        level -= min(cost, capacity)
    }
}
