import Crypto
import Foundation
import Synchronization

/// Everything the emulator remembers between requests, behind one lock.
///
/// Handlers take the lock for microseconds (a bucket check, a counter), never across an await.
final class EmulatorState: Sendable {
    struct Inner {
        var configuration: EmulatorConfiguration
        var random: SplitMix64
        var buckets: [String: DeploymentBuckets] = [:]
        var stats = EmulatorStats()
        var inFlight = 0
        var answeredPrompts: Set<String> = []
        /// Prompts answered 200 in batch lines, kept apart so online `repeated_answers` is unchanged.
        var batchAnsweredPrompts: Set<String> = []
        var clientRequestIDs: [String: Int] = [:]
        /// The current Retry-After window: from its first 429 until the latest end any 429 gave.
        var blockedSince: Date = .distantPast
        var blockedUntil: Date = .distantPast
        /// Requests counted inside the current window.
        var insideWindow = 0
        /// Until when each prompt's own last 429 asked it to wait.
        var promptRetryAfter: [String: Date] = [:]

        /// Opens a Retry-After window, or extends the open one; `promptKey`'s own wait is kept
        /// to catch its retry coming early.
        mutating func block(now: Date, seconds: Double, promptKey: String?) {
            if now >= blockedUntil {
                blockedSince = now
                insideWindow = 0
            }
            blockedUntil = max(blockedUntil, now.addingTimeInterval(seconds))
            if let promptKey { promptRetryAfter[promptKey] = now.addingTimeInterval(seconds) }
        }

        /// Counts a request for `promptKey` arriving before its own Retry-After ran out.
        mutating func noteArrival(promptKey: String, now: Date) {
            if let until = promptRetryAfter[promptKey], now < until { stats.retriesInsideRetryAfter += 1 }
        }
    }

    let inner: Mutex<Inner>
    let issuer = EmulatorTokenIssuer()
    /// The output knobs' per-prompt counters, shared with the batch lines.
    let outputDice: OutputDice
    /// Files and batches of the Batch API, behind their own lock.
    let batches: BatchStore

    init(configuration: EmulatorConfiguration) {
        inner = Mutex(Inner(configuration: configuration, random: SplitMix64(seed: configuration.seed)))
        let dice = OutputDice()
        outputDice = dice
        batches = BatchStore(outputDice: dice)
    }

    var configuration: EmulatorConfiguration {
        inner.withLock { $0.configuration }
    }

    func update(_ change: (inout EmulatorConfiguration) -> Void) {
        inner.withLock { change(&$0.configuration) }
    }

    /// Uses up one scripted IMDS failure; true when this request should fail.
    func takeIMDSFailure() -> Bool {
        inner.withLock { state in
            guard state.configuration.imdsTransientFailures > 0 else { return false }
            state.configuration.imdsTransientFailures -= 1
            return true
        }
    }

    func recordTokenRequest(grant: String, status: Int) {
        inner.withLock { state in
            state.stats.tokenRequests[grant, default: 0] += 1
            state.stats.tokenRequestsByStatus[String(status), default: 0] += 1
        }
    }

    /// Marks a data-plane request as started, noting one that arrived inside a 429's Retry-After.
    func begin(clientRequestID: String?, now: Date) {
        inner.withLock { state in
            state.inFlight += 1
            state.stats.peakConcurrency = max(state.stats.peakConcurrency, state.inFlight)
            // A request already on the wire when the window's first 429 left cannot have seen it: allow 50 ms.
            if now > state.blockedSince.addingTimeInterval(0.05), now < state.blockedUntil {
                state.stats.requestsInsideRetryAfter += 1
                state.insideWindow += 1
                state.stats.maxRequestsInsideOneRetryAfter = max(state.stats.maxRequestsInsideOneRetryAfter, state.insideWindow)
            }
            if let id = clientRequestID {
                let count = (state.clientRequestIDs[id] ?? 0) + 1
                state.clientRequestIDs[id] = count
                if count == 2 { state.stats.repeatedClientRequestIDs += 1 }
                state.stats.maxRequestsPerClientRequestID = max(state.stats.maxRequestsPerClientRequestID, count)
            }
        }
    }

    func end(route: String, status: Int, promptKey: String? = nil, tokens: Int = 0) {
        inner.withLock { state in
            state.inFlight -= 1
            state.stats.requests += 1
            state.stats.byStatus[String(status), default: 0] += 1
            state.stats.byRoute[route, default: [:]][String(status), default: 0] += 1
            if status == 200, let promptKey {
                if !state.answeredPrompts.insert(promptKey).inserted { state.stats.repeatedAnswers += 1 }
                state.stats.tokensServed += tokens
            }
        }
    }

    /// Counts one Batch API call, apart from the inference counters.
    func recordBatchCall(_ call: String, status: Int) {
        inner.withLock { state in
            state.stats.batchCalls[call, default: [:]][String(status), default: 0] += 1
        }
    }

    /// Changes the batch counters (uploads, creates, refusals).
    func recordBatch(_ change: (inout EmulatorStats) -> Void) {
        inner.withLock { change(&$0.stats) }
    }

    /// Counts batch lines that ran: the prompt keys of those answered 200, and those that failed.
    func recordBatchLines(_ work: BatchStore.Work) {
        guard !work.isEmpty else { return }
        inner.withLock { state in
            state.stats.batchLinesAnswered += work.answeredPromptKeys.count
            state.stats.batchLinesFailed += work.failed
            state.stats.batchTokensServed += work.tokens
            state.stats.batchRowsInTwoLiveBatches += work.doubled
            state.stats.outputInvalid += work.invalidOutputs
            state.stats.outputTruncated += work.truncatedOutputs
            for key in work.answeredPromptKeys {
                let seen = state.answeredPrompts.contains(key)
                if !state.batchAnsweredPrompts.insert(key).inserted || seen { state.stats.batchRepeatedAnswers += 1 }
            }
        }
    }

    /// Counts what the output knobs did to one online answer.
    func recordOutputFaults(_ faults: OutputFaults) {
        guard faults.invalid || faults.truncated else { return }
        inner.withLock { state in
            if faults.invalid { state.stats.outputInvalid += 1 }
            if faults.truncated { state.stats.outputTruncated += 1 }
        }
    }

    /// Rolls the fault dice for one request for `promptKey` (its arrival checked against its own last 429 first).
    func fault(promptKey: String, now: Date) -> Fault? {
        inner.withLock { state in
            state.noteArrival(promptKey: promptKey, now: now)
            let c = state.configuration
            if c.throttleRate > 0, state.random.nextUnit() < c.throttleRate {
                state.stats.throttled += 1
                state.block(now: now, seconds: c.throttleSeconds, promptKey: promptKey)
                return .throttle(c.throttleSeconds)
            }
            let roll = state.random.nextUnit()
            if roll < c.dropRate { return .drop }
            if roll < c.dropRate + c.slowRate { return .slow(c.slowSeconds) }
            if roll < c.dropRate + c.slowRate + c.faultRate {
                return .status(state.random.nextUnit() < 0.5 ? 500 : 503)
            }
            return nil
        }
    }

    func jitter() -> Double {
        inner.withLock { state in
            state.configuration.latencyMs + state.random.nextUnit() * state.configuration.latencyJitterMs
        }
    }

    enum Fault: Equatable {
        case throttle(Double)
        case drop
        case slow(Double)
        case status(Int)
    }

    /// Charges one request against the deployment's buckets, as Azure does on arrival.
    func admit(deployment: String, tokens: Int, promptKey: String, now: Date) -> RateDecision {
        inner.withLock { state in
            let c = state.configuration
            if let fixed = c.fixedRetryAfter {
                state.block(now: now, seconds: fixed, promptKey: promptKey)
                state.stats.throttled += 1
                return RateDecision(allowed: false, retryAfter: fixed, kind: .tokens, remainingRequests: 0, remainingTokens: 0)
            }
            var buckets = state.buckets[deployment] ?? DeploymentBuckets(rpm: c.requestsPerMinute, tpm: c.tokensPerMinute, now: now)
            let decision = buckets.admit(tokens: tokens, now: now)
            state.buckets[deployment] = buckets
            if !decision.allowed {
                state.stats.throttled += 1
                state.block(now: now, seconds: decision.retryAfter, promptKey: promptKey)
            } else {
                state.stats.tokensCharged += tokens
            }
            return decision
        }
    }

    func snapshot() -> EmulatorStats {
        inner.withLock { state in
            var stats = state.stats
            stats.inFlight = state.inFlight
            return stats
        }
    }
}

/// What the output knobs do to one 200 chat or Responses answer.
struct OutputFaults: Sendable, Equatable {
    /// The structured content is made broken JSON (`output_invalid_rate`).
    var invalid = false
    /// The content is cut to half and marked as having hit the token cap (`output_truncated_rate`).
    var truncated = false
}

/// The dice of the output knobs, rolled once per 200 chat or Responses answer.
///
/// A roll is SHA-256 of the seed, the prompt key and how many times that prompt was answered
/// before, not a draw from the shared generator: a run repeats whatever order the requests
/// arrive in, and a retry of the same prompt rolls again, so it can come out whole. The
/// counters have their own lock because batch lines roll while the batch store's lock is held,
/// and a second lock taken only in here cannot wait on anyone.
final class OutputDice: Sendable {
    /// Prompt key -> 200 answers rolled for it so far.
    let answered = Mutex<[String: Int]>([:])

    func roll(promptKey: String, structured: Bool, configuration: EmulatorConfiguration) -> OutputFaults {
        let invalidRate = structured ? configuration.outputInvalidRate : 0
        let truncatedRate = configuration.outputTruncatedRate
        // With both knobs at 0 nothing is remembered, so a clean run keeps no memory per prompt.
        guard invalidRate > 0 || truncatedRate > 0 else { return OutputFaults() }
        let attempt = answered.withLock { counts in
            let count = counts[promptKey, default: 0]
            counts[promptKey] = count + 1
            return count
        }
        let seed = configuration.seed
        return OutputFaults(
            invalid: invalidRate > 0 && Self.unit("invalid", promptKey, attempt, seed: seed) < invalidRate,
            truncated: truncatedRate > 0 && Self.unit("truncated", promptKey, attempt, seed: seed) < truncatedRate
        )
    }

    /// A number in 0..<1 for one die; the die's name keeps the two knobs' rolls independent.
    static func unit(_ die: String, _ promptKey: String, _ attempt: Int, seed: UInt64) -> Double {
        let digest = SHA256.hash(data: Data("\(seed)\u{0}\(die)\u{0}\(attempt)\u{0}\(promptKey)".utf8))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Double(value >> 11) / Double(UInt64(1) << 53)
    }
}

/// Azure's verdict on a request against the rate limits, with the headers it sends.
struct RateDecision: Sendable, Equatable {
    enum Kind: Sendable { case requests, tokens }
    var allowed: Bool
    var retryAfter: Double
    var kind: Kind
    var remainingRequests: Int?
    var remainingTokens: Int?
}

/// The RPM and TPM buckets of one deployment.
///
/// RPM is counted over 10-second windows (RPM/6 per window, as Azure documents); TPM over
/// a minute, charging the prompt estimate plus `max_tokens` when the request arrives.
struct DeploymentBuckets {
    var requests: TokenBucket?
    var tokens: TokenBucket?

    init(rpm: Int?, tpm: Int?, now: Date) {
        requests = rpm.map { TokenBucket(capacity: max(Double($0) / 6, 1), perSecond: Double($0) / 60, now: now) }
        tokens = tpm.map { TokenBucket(capacity: Double($0), perSecond: Double($0) / 60, now: now) }
    }

    mutating func admit(tokens cost: Int, now: Date) -> RateDecision {
        requests?.refill(now: now)
        tokens?.refill(now: now)
        if let wait = requests?.wait(for: 1) {
            return RateDecision(allowed: false, retryAfter: wait, kind: .requests, remainingRequests: 0, remainingTokens: tokens.map { Int($0.level) })
        }
        if let wait = tokens?.wait(for: Double(cost)) {
            return RateDecision(allowed: false, retryAfter: wait, kind: .tokens, remainingRequests: requests.map { Int($0.level) }, remainingTokens: Int(tokens?.level ?? 0))
        }
        requests?.level -= 1
        tokens?.level -= Double(cost)
        return RateDecision(
            allowed: true, retryAfter: 0, kind: .tokens,
            remainingRequests: requests.map { Int($0.level) }, remainingTokens: tokens.map { Int($0.level) }
        )
    }
}

struct TokenBucket {
    var capacity: Double
    var perSecond: Double
    var level: Double
    var updated: Date

    init(capacity: Double, perSecond: Double, now: Date) {
        self.capacity = capacity
        self.perSecond = perSecond
        level = capacity
        updated = now
    }

    mutating func refill(now: Date) {
        level = min(capacity, level + max(0, now.timeIntervalSince(updated)) * perSecond)
        updated = now
    }

    /// Seconds until `cost` fits, or `nil` when it fits now. A cost above capacity waits for a full bucket.
    func wait(for cost: Double) -> Double? {
        let needed = min(cost, capacity)
        guard level < needed else { return nil }
        return (needed - level) / perSecond
    }
}

/// A small, seedable generator so fault runs repeat.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
