import AsyncHTTPClient
import Crypto
import FoundryAuth
import Foundation
import Logging

/// How a run behaves beyond its job's settings: how it reports progress and how it stops.
public struct RunOptions: Sendable {
    /// How in-flight requests may finish after SIGINT/SIGTERM before they are cancelled.
    public var gracePeriod: TimeInterval = 5
    public var progress: ProgressMode = .log
    /// `engine: batch` and `auto`: wait until every batch ended (the default), or submit,
    /// poll once, export what is done and return (`run --no-wait`, exit 75 while batches run).
    public var wait = true

    public init(progress: ProgressMode = .log, gracePeriod: TimeInterval = 5, wait: Bool = true) {
        self.progress = progress
        self.gracePeriod = gracePeriod
        self.wait = wait
    }
}

/// How a job's pending rows become outcomes: claimed from the queue and recorded through
/// it, online (``Runner``) or through the provider's Batch API (``BatchEngine``), so status,
/// retry, export, variants, targets and the token budget work the same with either.
protocol RowEngine: Sendable {
    /// Works the job's rows until none is left to do, or until stopped.
    ///
    /// - Returns: the counters of this run and why it stopped early, if it did.
    func run() async throws -> (RunCounters, StopReason?)
}

/// Runs every pending row of a job through a bounded pool of workers: the online engine.
///
/// Workers claim rows under a lease, pace themselves through the ``RateGate``, send with the
/// shared token provider, and commit each outcome in the transaction that ends the row.
/// A condition every row would hit stops the pool and leaves the rest pending.
public final class Runner: RowEngine {
    /// The job's limits, with the command line's overrides applied.
    let limits: JobFile.Limits
    let queue: any RowQueue
    /// The job's targets, each with its rate gate; routes every try.
    let pool: TargetPool
    let options: RunOptions
    let logger: Logger
    let control: RunControl
    let owner: String
    /// How long a claim holds a row; extended every third of it while the run lives.
    let leaseDuration: TimeInterval
    let decisionSettings: RowDecision.Settings

    public init(
        limits: JobFile.Limits, queue: any RowQueue, service: ServiceSession, options: RunOptions,
        control: RunControl = RunControl(), logger: Logger = Logger(label: "foundry-batch.run")
    ) {
        self.limits = limits
        self.queue = queue
        self.options = options
        self.logger = logger
        self.control = control
        pool = TargetPool(service: service, limits: limits)
        owner = LeaseOwner.make()
        leaseDuration = max(30, limits.timeout + 15)
        decisionSettings = RowDecision.Settings(limits: limits)
    }

    /// Processes rows until none is pending or running, or until stopped.
    ///
    /// - Returns: the counters of this run and why it stopped early, if it did.
    public func run() async throws -> (RunCounters, StopReason?) {
        let source = RowSource(queue: queue, owner: owner, leaseDuration: leaseDuration, batchSize: min(max(limits.concurrency, 1), 256))
        let writer = CompletionWriter(queue: queue)
        let state = RunState(budget: limits.maxTokensTotal, spent: try await budgetSpent())
        try await reclaimDeadOwners()
        // Each target's quota is the job's, not this process's: share it with every process
        // running the job now. One that joins a running job starts with empty buckets.
        let runners = try await queue.checkIn(owner: owner, now: Date(), staleBefore: Date() - Self.runnerStale)
        if runners > 1 { await pool.share(among: runners, joining: true) }
        if pool.isPooled, runners == 1 { try await queue.clearParkings() }
        let progress = ProgressReporter(mode: options.progress, queue: queue, state: state, logger: logger, pool: pool)
        await progress.start()

        let heartbeat = Task { await self.heartbeat() }
        let sharing = Task { await self.shareQuota(runners: runners) }
        let stopWatcher = Task { await self.watchStop(source: source) }
        let concurrency = limits.concurrency
        let workers = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask { await self.work(source: source, writer: writer, state: state) }
                }
                await group.waitForAll()
            }
        }
        await control.register(workers)
        await workers.value
        // Every task of the run ends here, before the session may close the queue.
        heartbeat.cancel()
        stopWatcher.cancel()
        sharing.cancel()
        await heartbeat.value
        await stopWatcher.value
        await sharing.value
        try? await queue.checkOut(owner: owner)
        await source.close()
        await progress.finish()
        do {
            try await queue.release(owner: owner, seqs: nil)
        } catch let error as StateUnreachable {
            // The rows wait under leases that expire; the run's own figures still reach its summary.
            switch await control.reason {
            case nil: await control.stop(.fatal(FatalCondition(error.description)))
            case .interrupted: return (await state.counters, .interruptedHolding(error.description))
            default: logger.warning("\(error.description)")
            }
        }
        return (await state.counters, await control.reason)
    }

    /// Tokens the job has used so far, for `limits.max_tokens_total`.
    func budgetSpent() async throws -> Int {
        guard limits.maxTokensTotal != nil else { return 0 }
        let counts = try await queue.counts().job
        return counts.promptTokens + counts.completionTokens
    }

    // Thousands of workers wait on the wire at once, each holding the async frames of
    // `work` and `process`; those two are kept small on purpose, and what they call is not
    // inlined into them, so that the locals of admission, judgement and error handling live
    // only while those run.

    func work(source: RowSource, writer: CompletionWriter, state: RunState) async {
        while await control.reason == nil, !Task.isCancelled {
            do {
                guard let row = try await nextRow(source) else { return }
                try await process(row, writer: writer, state: state)
            } catch {
                if await stop(for: error) { return }
            }
        }
    }

    /// The next row for this worker, waiting while others are due later or still running
    /// elsewhere; nil when no row is left to do, or the run stops.
    @inline(never)
    func nextRow(_ source: RowSource) async throws -> ClaimedRow? {
        while await control.reason == nil, !Task.isCancelled {
            if let row = try await source.next() { return row }
            let (nextDue, running) = try await queue.activity()
            if nextDue == nil, running == 0 { return nil }
            let wait = nextDue.map { min(max($0.timeIntervalSinceNow, 0.02), 0.5) } ?? 0.2
            try await Task.sleep(for: Bounded.duration(seconds: wait))
        }
        return nil
    }

    /// Stops the run for what a worker threw; true when the worker is to end quietly (cancelled).
    @inline(never)
    func stop(for error: any Error) async -> Bool {
        switch error {
        case is CancellationError:
            return true
        case let error as FatalCondition:
            await control.stop(.fatal(error))
        case let error as StorageError:
            await control.stop(.storageFailed(error.afterSending()))
        case let error as StateUnreachable:
            await control.stop(.fatal(FatalCondition(error.description)))
        default:
            await control.stop(.fatal(FatalCondition("the run failed: \(error)")))
        }
        return false
    }

    /// What a worker does after a try of its row.
    enum Next: Sendable {
        case done
        case again(refreshed: Bool)
    }

    func process(_ row: ClaimedRow, writer: CompletionWriter, state: RunState) async throws {
        var refreshed = false
        while true {
            let next: Next
            switch try await start(row, state: state, refreshed: refreshed) {
            case .noToken(let condition, let lane):
                next = try await follow(.park(condition, until: nil), lane: lane, row: row, writer: writer, state: state)
            case .flying(let flight):
                // The one long wait of a try.
                let answer = await flight.exchange.answer()
                let (action, tokenRate) = try await land(flight, answer: answer, row: row, state: state, refreshed: refreshed)
                // Given back from here, once `land` has returned: a burst of answers queues on
                // the gate and the budget, and each row then holds small frames only.
                await giveBack(flight, action: action, tokenRate: tokenRate, row: row, state: state)
                next = try await follow(action, lane: flight.lane, row: row, writer: writer, state: state)
            }
            guard case .again(let refresh) = next else { return }
            refreshed = refresh
        }
    }

    /// Carries out a decision about `row`: a commit, a parked target, a stop.
    @inline(never)
    func follow(
        _ action: RowDecision.Action, lane: TargetPool.Lane, row: ClaimedRow, writer: CompletionWriter, state: RunState
    ) async throws -> Next {
        switch action {
        case .refreshToken:
            return .again(refreshed: true)
        case .park(let condition, let until):
            // The row goes to another target, or the pool says none is left.
            await state.forgetThrottle(row.seq)
            if pool.park(lane, until: until, reason: condition), pool.isPooled {
                let reason = TargetPool.describe(.init(until: until, reason: condition))
                logger.warning("target parked", metadata: ["target": "\(lane.name)", "reason": "\(reason)"])
                try await queue.park(target: lane.name, until: until, reason: condition.message, at: Date())
            }
            return .again(refreshed: false)
        case .stop(let condition):
            throw condition
        case .commit(let outcome, let clientRequestID, _, let countsThrottle):
            if countsThrottle { await state.countThrottled() }
            let completion = Completion(
                seq: row.seq, owner: owner, outcome: outcome, clientRequestID: clientRequestID, target: pool.isPooled ? lane.name : nil
            )
            _ = try await writer.commit(completion)
            return .done
        }
    }

    /// One try of a row on the wire: admitted at `lane`, its estimate reserved in the token
    /// budget, its request sent.
    struct Flight: Sendable {
        let lane: TargetPool.Lane
        let routed: ClaimedRow
        let bearer: AccessToken?
        let exchange: HTTPTransport.Exchange
    }

    /// How the start of a try went.
    enum Start: Sendable {
        case flying(Flight)
        /// No token to send with: the target is to be parked; the admission is given back.
        case noToken(FatalCondition, TargetPool.Lane)
    }

    /// Starts one try of `row`: its estimate reserved in the token budget, a place taken at a
    /// target's gate, a token, and the request on the wire.
    ///
    /// Both admissions are given back exactly once on every path: here when the try ends
    /// before the wire (a throw, no token), else by ``giveBack(_:action:tokenRate:row:state:)`` after ``land(_:answer:row:state:refreshed:)``.
    @inline(never)
    func start(_ row: ClaimedRow, state: RunState, refreshed: Bool) async throws -> Start {
        if let budget = await state.reserve(row.estimatedTokens) {
            throw FatalCondition("the token budget limits.max_tokens_total = \(budget) would be passed by the next request; raise it to go on")
        }
        let lane: TargetPool.Lane
        do {
            lane = try await pool.enter(model: row.deployment, tokens: row.estimatedTokens, avoid: row.lastTarget)
        } catch {
            await state.release(row.estimatedTokens)
            throw error
        }
        // The token is taken after the gate: a worker may wait there through a long 429
        // pause, and must not then send a token that expired meanwhile.
        var bearer: AccessToken?
        if case .bearer(let provider) = lane.target.authorization {
            do {
                bearer = try await provider.token()
            } catch {
                let cancelled = Task.isCancelled
                await lane.gate.leave(.other)
                await state.release(row.estimatedTokens)
                if cancelled { throw CancellationError() }
                // The provider throws only AuthError, whose description says what to fix.
                return .noToken(FatalCondition("cannot get an Entra ID token: \(error)"), lane)
            }
        }
        let routed = lane.routed(row)
        // A retry is a request beyond the row's first: counted when it is sent, so a try
        // that gave up or a retry the run never sent (it stopped) is not one.
        await state.countRequest(seq: row.seq, retry: refreshed || row.attempts > 0)
        return .flying(Flight(lane: lane, routed: routed, bearer: bearer, exchange: lane.transport.launch(routed, bearer: bearer?.token)))
    }

    /// Decides one try of `row` by its answer (``RowDecision``); the caller then gives the
    /// admission back with ``giveBack(_:action:tokenRate:row:state:)``. The one thing it
    /// throws is a cancellation, and then it has given the admission back itself.
    @inline(never)
    func land(
        _ flight: Flight, answer: ServiceAnswer, row: ClaimedRow, state: RunState, refreshed: Bool
    ) async throws -> (RowDecision.Action, tokenRate: (remaining: Int, retryAfter: TimeInterval)?) {
        let lane = flight.lane, target = lane.target, routed = flight.routed
        pool.noteAnswer(lane, answered: answer.body != nil)
        // Cancelled while on the wire: an answer that came back whole is still judged and
        // kept (it was paid for); anything else is no answer, and the row is released.
        if Task.isCancelled, answer.body == nil {
            await lane.gate.leave(.other)
            await state.release(row.estimatedTokens)
            throw CancellationError()
        }
        let now = Date()
        let url = target.url(api: routed.api, deployment: routed.deployment)
        let reading = RowDecision.Reading(answer, row: routed, url: url, clientRequestID: flight.exchange.clientRequestID, now: now)
        // Read for every 429, also one that parks the target (a Retry-After beyond
        // max_retry_wait): the clocks it moves matter no more once it is parked.
        var pacing: RowDecision.Pacing?
        if let delay = reading.throttleDelay {
            pacing = RowDecision.Pacing(
                job: await lane.gate.throttle(serverDelay: delay, now: now), rowThrottledFor: await state.throttled(row.seq, now: now)
            )
        }
        let action = RowDecision.decide(
            reading, row: row, settings: decisionSettings, credential: .init(target.authorization, refreshed: refreshed, keyVariable: lane.spec.apiKeyEnv), pacing: pacing, now: now
        )
        // A 429 for tokens (fewer left than this request needs) tells the service's rate.
        var tokenRate: (remaining: Int, retryAfter: TimeInterval)?
        if case .commit(.retry, _, .throttled, _) = action, let delay = reading.throttleDelay ?? nil,
            let remaining = reading.record?.remaining.tokens, remaining < row.estimatedTokens
        {
            tokenRate = (remaining, delay)
        }
        return (action, tokenRate)
    }

    /// Ends the admission of a landed try: what a 429 told of the service's token rate
    /// learnt, a refused token dropped, and the gate and the token budget given back
    /// (settled with the committed outcome, or released).
    @inline(never)
    func giveBack(
        _ flight: Flight, action: RowDecision.Action, tokenRate: (remaining: Int, retryAfter: TimeInterval)?, row: ClaimedRow, state: RunState
    ) async {
        let lane = flight.lane
        if let tokenRate {
            await lane.gate.learnTokenRate(cost: row.estimatedTokens, remaining: tokenRate.remaining, retryAfter: tokenRate.retryAfter)
        }
        if case .refreshToken = action, case .bearer(let provider) = lane.target.authorization, let bearer = flight.bearer {
            await provider.invalidate(bearer)
        }
        if case .commit(let outcome, _, let left, _) = action {
            await lane.gate.leave(left)
            await state.settle(row.estimatedTokens, seq: row.seq, outcome: outcome)
        } else {
            await lane.gate.leave(.other)
            await state.release(row.estimatedTokens)
        }
    }

    /// A runner not seen for this long (killed) no longer takes a share of the quota.
    static let runnerStale: TimeInterval = 5
    /// How often a run says it is alive and counts the others.
    static let runnerInterval: TimeInterval = 1

    /// Keeps this process's share of each target's quota right as other runs of the job
    /// start and end.
    func shareQuota(runners: Int) async {
        var current = runners
        while !Task.isCancelled {
            try? await Task.sleep(for: Bounded.duration(seconds: Self.runnerInterval))
            if Task.isCancelled { return }
            let now = Date()
            guard let counted = try? await queue.checkIn(owner: owner, now: now, staleBefore: now - Self.runnerStale) else { continue }
            if counted != current {
                logger.info("sharing the quota", metadata: ["runners": "\(counted)"])
                await pool.share(among: counted)
                current = counted
            }
        }
    }

    /// Extends this process's leases and returns rows of dead processes to the queue.
    func heartbeat() async {
        let interval = leaseDuration / 3
        while !Task.isCancelled {
            try? await Task.sleep(for: Bounded.duration(seconds: interval))
            if Task.isCancelled { return }
            do {
                try await queue.extendLeases(owner: owner, until: Date().addingTimeInterval(leaseDuration))
                try await queue.reclaimExpired(now: Date())
                try await reclaimDeadOwners()
            } catch is CancellationError {
                return  // the run ended while the heartbeat was at the database
            } catch {
                logger.warning("could not extend leases: \(error)")
            }
        }
    }

    /// Rows leased by a process on this machine that no longer exists go back to pending
    /// at once, instead of waiting for their leases to expire.
    func reclaimDeadOwners() async throws {
        for other in try await queue.leaseOwners() where other != owner && LeaseOwner.isDeadLocal(other) {
            logger.info("returning rows of a stopped process to the queue", metadata: ["owner": "\(other)"])
            try await queue.release(owner: other, seqs: nil)
        }
    }

    /// On an interrupt, stops claiming at once and cancels what is still in flight after the grace period.
    ///
    /// A stop of any kind closes the gate at once, so no worker waiting there (through a
    /// long 429 pause, say) sends another request; requests already on the wire get the
    /// grace period to finish and are then cancelled.
    func watchStop(source: RowSource) async {
        await control.waitForStop()
        await source.close()
        await pool.close()
        try? await Task.sleep(for: Bounded.duration(seconds: options.gracePeriod))
        if Task.isCancelled { return }
        await control.cancelWorkers()
    }
}

/// The run's lease owner id: `host/pid/nonce/space`, so a later run on the same machine
/// can tell that the owner died.
///
/// `space` names the process-id space: the kernel's boot id and the pid namespace. Two
/// containers that share a hostname but not a pid namespace have different spaces, so
/// neither takes the other's pid for its own and releases live rows; their rows return
/// when the leases expire.
enum LeaseOwner {
    static func make() -> String {
        "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UUID().uuidString.prefix(8))/\(space)"
    }

    static let space: String = {
        let boot = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")) ?? ""
        guard !boot.isEmpty || !namespace.isEmpty else { return "unknown" }
        let digest = SHA256.hash(data: Data((boot.trimmingCharacters(in: .whitespacesAndNewlines) + "|" + namespace).utf8))
        return digest.prefix(6).map { String(format: "%02x", $0) }.joined()
    }()

    static func isDeadLocal(_ owner: String) -> Bool {
        let parts = owner.split(separator: "/")
        guard parts.count == 4, parts[0] == ProcessInfo.processInfo.hostName, parts[3] == space, space != "unknown",
            let pid = Int32(parts[1])
        else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }
}
