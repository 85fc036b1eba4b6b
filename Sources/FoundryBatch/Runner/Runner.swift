import AsyncHTTPClient
import Crypto
import FoundryAuth
import Foundation
import Logging

/// How a run behaves beyond the job file.
public struct RunOptions: Sendable {
    /// Workers; defaults to the job's `limits.concurrency`.
    public var concurrency: Int
    public var maxAttempts: Int
    /// How in-flight requests may finish after SIGINT/SIGTERM before they are cancelled.
    public var gracePeriod: TimeInterval = 5
    /// How long a claim holds a row; extended every third of it while the run lives.
    public var leaseDuration: TimeInterval
    public var progress: ProgressMode = .log

    /// The job's limits, with the command line's overrides where given.
    public init(limits: JobFile.Limits, concurrency: Int? = nil, maxAttempts: Int? = nil, progress: ProgressMode = .log) {
        self.concurrency = concurrency ?? limits.concurrency
        self.maxAttempts = maxAttempts ?? limits.maxAttempts
        self.progress = progress
        leaseDuration = max(30, limits.timeout + 15)
    }
}

/// Runs every pending row of a job through a bounded pool of workers.
///
/// Workers claim rows under a lease, pace themselves through the ``RateGate``, send with the
/// shared token provider, and commit each outcome in the transaction that ends the row.
/// A condition every row would hit stops the pool and leaves the rest pending.
public final class Runner: Sendable {
    let job: JobFile
    let queue: any RowQueue
    let transport: HTTPTransport
    let target: ServiceTarget
    let options: RunOptions
    let logger: Logger
    let control: RunControl
    let owner: String

    public init(
        job: JobFile, queue: any RowQueue, http: HTTPClient, target: ServiceTarget, options: RunOptions,
        control: RunControl = RunControl(), logger: Logger = Logger(label: "foundry-batch.run")
    ) {
        self.job = job
        self.queue = queue
        self.target = target
        self.options = options
        self.logger = logger
        self.control = control
        transport = HTTPTransport(http: http, target: target, timeout: job.limits.timeout)
        owner = LeaseOwner.make()
    }

    /// Processes rows until none is pending or running, or until stopped.
    ///
    /// - Returns: the counters of this run and why it stopped early, if it did.
    public func run() async throws -> (RunCounters, StopReason?) {
        let gate = RateGate(
            concurrency: options.concurrency, requestsPerMinute: job.limits.requestsPerMinute, tokensPerMinute: job.limits.tokensPerMinute
        )
        let source = RowSource(queue: queue, owner: owner, leaseDuration: options.leaseDuration, batchSize: min(max(options.concurrency, 1), 256))
        let writer = CompletionWriter(queue: queue)
        let state = RunState(budget: job.limits.maxTokensTotal, spent: try await budgetSpent())
        try await reclaimDeadOwners()
        let progress = ProgressReporter(mode: options.progress, queue: queue, state: state, logger: logger)
        await progress.start()

        let heartbeat = Task { await self.heartbeat() }
        let stopWatcher = Task { await self.watchStop(source: source, gate: gate) }
        let concurrency = options.concurrency
        let workers = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask { await self.work(source: source, gate: gate, writer: writer, state: state) }
                }
                await group.waitForAll()
            }
        }
        await control.register(workers)
        await workers.value
        heartbeat.cancel()
        stopWatcher.cancel()
        await source.close()
        try await queue.release(owner: owner, seqs: nil)
        await progress.finish()
        return (await state.counters, await control.reason)
    }

    /// Tokens the job has used so far, for `limits.max_tokens_total`.
    func budgetSpent() async throws -> Int {
        guard job.limits.maxTokensTotal != nil else { return 0 }
        let counts = try await queue.counts().job
        return counts.promptTokens + counts.completionTokens
    }

    func work(source: RowSource, gate: RateGate, writer: CompletionWriter, state: RunState) async {
        while await control.reason == nil, !Task.isCancelled {
            do {
                guard let row = try await source.next() else {
                    let (nextDue, running) = try await queue.activity()
                    if nextDue == nil, running == 0 { return }
                    let wait = nextDue.map { min(max($0.timeIntervalSinceNow, 0.02), 0.5) } ?? 0.2
                    try await Task.sleep(for: Bounded.duration(seconds: wait))
                    continue
                }
                try await process(row, gate: gate, writer: writer, state: state)
            } catch is CancellationError {
                return
            } catch let error as FatalCondition {
                await control.stop(.fatal(error))
            } catch let error as StorageError {
                await control.stop(.storageFailed(error.afterSending()))
            } catch {
                await control.stop(.fatal(FatalCondition("the run failed: \(error)")))
            }
        }
    }

    /// What one try of a row came to, once its answer was judged.
    enum Step {
        /// Commit this outcome; `clientRequestID` is the try's, kept even without an answer.
        case commit(RowOutcome, clientRequestID: String)
        /// The token was refused once: drop it and try again with a new one.
        case refresh
    }

    func process(_ row: ClaimedRow, gate: RateGate, writer: CompletionWriter, state: RunState) async throws {
        var refreshed = false
        while true {
            if let budget = await state.reserve(row.estimatedTokens) {
                throw FatalCondition(
                    "the token budget limits.max_tokens_total = \(budget) would be passed by the next request; raise it to go on"
                )
            }
            let step: Step
            do {
                step = try await attempt(row, gate: gate, state: state, refreshed: refreshed)
            } catch {
                await state.release(row.estimatedTokens)
                throw error
            }
            switch step {
            case .refresh:
                await state.release(row.estimatedTokens)
                refreshed = true
            case .commit(let outcome, let clientRequestID):
                await state.settle(row.estimatedTokens, seq: row.seq, outcome: outcome)
                _ = try await writer.commit(Completion(seq: row.seq, owner: owner, outcome: outcome, clientRequestID: clientRequestID))
                return
            }
        }
    }

    /// One try of `row`: through the gate, on the wire, and judged. The gate is left exactly
    /// once on every path, with what the answer says about the service's limits.
    func attempt(_ row: ClaimedRow, gate: RateGate, state: RunState, refreshed: Bool) async throws -> Step {
        try await gate.enter(tokens: row.estimatedTokens)
        do {
            let (step, left) = try await judge(row, gate: gate, state: state, refreshed: refreshed)
            await gate.leave(left)
            return step
        } catch {
            await gate.leave(.other)
            throw error
        }
    }

    func judge(_ row: ClaimedRow, gate: RateGate, state: RunState, refreshed: Bool) async throws -> (Step, RateGate.Outcome) {
        // The token is taken after the gate: a worker may wait there through a long 429
        // pause, and must not then send a token that expired meanwhile.
        var bearer: AccessToken?
        if case .bearer(let provider) = target.authorization {
            do {
                bearer = try await provider.token()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw FatalCondition("cannot get an Entra ID token: \(error.description)")
            }
        }
        // A retry is a request beyond the row's first: counted when it is sent, so a try
        // that gave up or a retry the run never sent (it stopped) is not one.
        await state.countRequest(seq: row.seq, retry: refreshed || row.attempts > 0)
        let (answer, clientRequestID) = await transport.send(row, bearer: bearer?.token)
        // Cancelled while on the wire: an answer that came back whole is still judged and
        // kept (it was paid for); anything else is no answer, and the row is released.
        if Task.isCancelled, answer.body == nil { throw CancellationError() }
        let url = target.url(api: row.api, deployment: row.deployment)
        let decoded = answer.body.flatMap(ServiceBody.decode)
        let verdict = RetryPolicy.classify(answer, body: decoded, deployment: row.deployment, url: url)
        let record = Self.record(answer, decoded: decoded, clientRequestID: clientRequestID)
        let now = Date()
        let maxWait = job.limits.maxRetryWait
        func commit(_ outcome: RowOutcome) -> Step { .commit(outcome, clientRequestID: clientRequestID) }
        switch verdict {
        case .success:
            guard let record else { throw FatalCondition("internal error: a success without an answer for row \(row.id)") }
            let left = RateGate.Outcome.success(
                remainingRequests: record.remaining.requests, remainingTokens: record.remaining.tokens, estimate: row.estimatedTokens
            )
            return (commit(.succeeded(record.response)), left)
        case .retry(let delay, let error, throttled: true):
            if let delay, delay > maxWait {
                throw FatalCondition(
                    "the service asks to wait \(Bounded.int(delay)) s before the next request (HTTP 429: \(error.message)), more than limits.max_retry_wait (\(Bounded.int(maxWait)) s): the quota is exhausted. Run the job again after \(Self.clockTime(now.addingTimeInterval(delay)))."
                )
            }
            var throttle = await gate.throttle(serverDelay: delay, now: now)
            if throttle.throttledFor > maxWait {
                throw FatalCondition(
                    "the service has answered nothing but 429 (\(error.code)) for \(Bounded.int(throttle.throttledFor)) s, longer than limits.max_retry_wait (\(Bounded.int(maxWait)) s): its quota is used up or it is overloaded. Run the job again later."
                )
            }
            // Our own back-off never waits longer than the job allows; the clock above ends it.
            throttle.wait = min(throttle.wait, maxWait)
            let rowThrottled = await state.throttled(row.seq, now: now)
            if rowThrottled > Self.rowThrottleFactor * maxWait {
                var final = error
                final.message =
                    "throttled (HTTP 429) for \(Bounded.int(rowThrottled)) s without an answer, longer than \(Int(Self.rowThrottleFactor)) x limits.max_retry_wait: \(error.message)"
                return (commit(.failed(error: final, response: record?.response)), .throttled(retryAfter: throttle.wait))
            }
            await state.countThrottled()
            // A 429 paces the whole job, not this row: it does not use up the row's attempts.
            let outcome = RowOutcome.retry(at: now.addingTimeInterval(throttle.wait), error: error, response: record?.response, countsAsAttempt: false)
            return (commit(outcome), .throttled(retryAfter: throttle.wait))
        case .retry(let delay, let error, throttled: false):
            if let delay, delay > maxWait {
                throw FatalCondition(
                    "the service asks to wait \(Bounded.int(delay)) s before trying again (\(error.statusCode.map { "HTTP \($0)" } ?? error.code): \(error.message)), more than limits.max_retry_wait (\(Bounded.int(maxWait)) s). Run the job again after \(Self.clockTime(now.addingTimeInterval(delay)))."
                )
            }
            if row.attempts + 1 >= options.maxAttempts {
                var final = error
                final.message = "gave up after \(row.attempts + 1) attempts: \(error.message)"
                return (commit(.failed(error: final, response: record?.response)), .other)
            }
            // A Retry-After of 0 (or a date already past) is no pacing: back off as without one.
            let wait = delay.flatMap { $0 > 0 ? $0 : nil } ?? RetryPolicy.backoff(attempt: row.attempts + 1)
            return (commit(.retry(at: now.addingTimeInterval(wait), error: error, response: record?.response)), .other)
        case .permanent(let error):
            return (commit(.failed(error: error, response: record?.response)), .other)
        case .unauthorized(let error):
            if case .bearer(let provider) = target.authorization, let bearer, !refreshed {
                await provider.invalidate(bearer)
                return (.refresh, .other)
            }
            let hint =
                switch target.authorization {
                case .apiKey: "check AZURE_OPENAI_API_KEY (a key of this resource, not another's)"
                case .bearer: "the token was refused even after a refresh; check the credential's tenant and that the endpoint belongs to it"
                case .none: "this endpoint needs a credential: set auth: in the job file"
                }
            throw FatalCondition("the service rejected the credentials (HTTP 401): \(error.message)\nFix: \(hint).")
        case .fatal(let condition):
            throw condition
        }
    }

    /// A row throttled for longer than this many times `limits.max_retry_wait`, while the
    /// service answers other rows, fails with its 429 code instead of waiting for ever.
    static let rowThrottleFactor: Double = 4

    struct Recorded {
        var response: ResponseRecord
        var remaining: (requests: Int?, tokens: Int?)
    }

    /// Keeps an answer with its row: the body as valid JSON, usage, ids and rate headers.
    static func record(_ answer: ServiceAnswer, decoded: ServiceBody?, clientRequestID: String) -> Recorded? {
        guard case .response(let status, let headers, let bytes, let latency) = answer else { return nil }
        func header(_ name: String) -> String? { headers.value(of: name) }
        let body = decoded?.text ?? JSONValue.string(String(decoding: bytes.prefix(65536), as: UTF8.self)).jsonText
        let usage = decoded?.usage
        let response = ResponseRecord(
            statusCode: status, requestID: header("apim-request-id") ?? header("x-request-id"), clientRequestID: clientRequestID,
            body: body, promptTokens: usage?.promptTokens, completionTokens: usage?.completionTokens,
            totalTokens: usage?.totalTokens ?? usage.map { Bounded.add($0.promptTokens ?? 0, $0.completionTokens ?? 0) }, latencyMs: latency
        )
        func count(_ name: String) -> Int? { header(name).flatMap { Int($0.utf8.split(separator: 0x20).first.map { Substring($0) } ?? "") } }
        return Recorded(response: response, remaining: (count("x-ratelimit-remaining-requests"), count("x-ratelimit-remaining-tokens")))
    }

    static func clockTime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        return formatter.string(from: date)
    }

    /// Extends this process's leases and returns rows of dead processes to the queue.
    func heartbeat() async {
        let interval = options.leaseDuration / 3
        while !Task.isCancelled {
            try? await Task.sleep(for: Bounded.duration(seconds: interval))
            if Task.isCancelled { return }
            do {
                try await queue.extendLeases(owner: owner, until: Date().addingTimeInterval(options.leaseDuration))
                try await queue.reclaimExpired(now: Date())
                try await reclaimDeadOwners()
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
    func watchStop(source: RowSource, gate: RateGate) async {
        await control.waitForStop()
        await source.close()
        await gate.close()
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
