import AsyncHTTPClient
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

    public init(limits: JobFile.Limits) {
        concurrency = limits.concurrency
        maxAttempts = limits.maxAttempts
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
        let stopWatcher = Task { await self.watchStop(source: source) }
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
                    try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
                    continue
                }
                try await process(row, gate: gate, writer: writer, state: state)
            } catch is CancellationError {
                return
            } catch let error as FatalCondition {
                await control.stop(.fatal(error))
            } catch {
                await control.stop(.fatal(FatalCondition("the run failed: \(error)")))
            }
        }
    }

    func process(_ row: ClaimedRow, gate: RateGate, writer: CompletionWriter, state: RunState) async throws {
        var refreshed = false
        while true {
            if let budget = await state.reserve(row.estimatedTokens) {
                throw FatalCondition(
                    "the token budget limits.max_tokens_total = \(budget) would be passed by the next request; raise it to go on"
                )
            }
            do {
                try await gate.enter(tokens: row.estimatedTokens)
            } catch {
                await state.release(row.estimatedTokens)
                throw error
            }
            // The token is taken after the gate: a worker may wait there through a long 429
            // pause, and must not then send a token that expired meanwhile.
            var bearer: AccessToken?
            if case .bearer(let provider) = target.authorization {
                do {
                    bearer = try await provider.token()
                } catch {
                    await gate.leave(.other)
                    await state.release(row.estimatedTokens)
                    throw FatalCondition("cannot get an Entra ID token: \(error.description)")
                }
            }
            let (answer, clientRequestID) = await transport.send(row, bearer: bearer?.token)
            if Task.isCancelled {
                await gate.leave(.other)
                await state.release(row.estimatedTokens)
                throw CancellationError()
            }
            await state.countRequest()
            let url = target.url(api: row.api, deployment: row.deployment)
            let verdict = RetryPolicy.classify(answer, deployment: row.deployment, url: url)
            let record = Self.record(answer, clientRequestID: clientRequestID)
            let now = Date()
            var outcome: RowOutcome?
            switch verdict {
            case .success:
                await gate.leave(
                    .success(
                        remainingRequests: record?.remaining.requests, remainingTokens: record?.remaining.tokens, estimate: row.estimatedTokens
                    )
                )
                if let record { outcome = .succeeded(record.response) }
            case .retry(let delay, let error, let throttled):
                let wait = delay ?? RetryPolicy.backoff(attempt: row.attempts + 1)
                await gate.leave(throttled ? .throttled(retryAfter: wait) : .other)
                if throttled, wait > job.limits.maxRetryWait {
                    await state.release(row.estimatedTokens)
                    throw FatalCondition(
                        "the service asks to wait \(Int(wait)) s before the next request (\(error.message)), more than limits.max_retry_wait (\(Int(job.limits.maxRetryWait)) s): the quota is exhausted. Run the job again after \(Self.clockTime(now.addingTimeInterval(wait)))."
                    )
                }
                await state.countRetry(throttled: throttled)
                if !throttled, row.attempts + 1 >= options.maxAttempts {
                    var final = error
                    final.message = "gave up after \(row.attempts + 1) attempts: \(error.message)"
                    outcome = .failed(error: final, response: record?.response)
                } else {
                    // A 429 paces the whole job, not this row: it does not use up the row's
                    // attempts (a Retry-After beyond max_retry_wait stops the run instead).
                    outcome = .retry(at: now.addingTimeInterval(wait), error: error, response: record?.response, countsAsAttempt: !throttled)
                }
            case .permanent(let error):
                await gate.leave(.other)
                outcome = .failed(error: error, response: record?.response)
            case .unauthorized(let error):
                await gate.leave(.other)
                await state.release(row.estimatedTokens)
                if case .bearer(let provider) = target.authorization, let bearer, !refreshed {
                    await provider.invalidate(bearer)
                    refreshed = true
                    continue
                }
                let hint =
                    switch target.authorization {
                    case .apiKey: "check AZURE_OPENAI_API_KEY (a key of this resource, not another's)"
                    case .bearer: "the token was refused even after a refresh; check the credential's tenant and that the endpoint belongs to it"
                    case .none: "this endpoint needs a credential: set auth: in the job file"
                    }
                throw FatalCondition("the service rejected the credentials (HTTP 401): \(error.message)\nFix: \(hint).")
            case .fatal(let condition):
                await gate.leave(.other)
                await state.release(row.estimatedTokens)
                throw condition
            }
            guard let outcome else { return }
            await state.settle(row.estimatedTokens, outcome: outcome)
            _ = try await writer.commit(Completion(seq: row.seq, owner: owner, outcome: outcome))
            return
        }
    }

    struct Recorded {
        var response: ResponseRecord
        var remaining: (requests: Int?, tokens: Int?)
    }

    /// Keeps an answer with its row: the body as valid JSON, usage, ids and rate headers.
    static func record(_ answer: ServiceAnswer, clientRequestID: String) -> Recorded? {
        guard case .response(let status, let headers, let bytes, let latency) = answer else { return nil }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        let decoded = ServiceBody.decode(bytes)
        let body = decoded != nil ? String(decoding: bytes, as: UTF8.self) : JSONValue.string(String(decoding: bytes.prefix(65536), as: UTF8.self)).jsonText
        let usage = decoded?.usage
        let response = ResponseRecord(
            statusCode: status, requestID: header("apim-request-id") ?? header("x-request-id"), clientRequestID: clientRequestID,
            body: body, promptTokens: usage?.promptTokens, completionTokens: usage?.completionTokens,
            totalTokens: usage?.totalTokens ?? usage.map { ($0.promptTokens ?? 0) + ($0.completionTokens ?? 0) }, latencyMs: latency
        )
        return Recorded(
            response: response,
            remaining: (header("x-ratelimit-remaining-requests").flatMap(Int.init), header("x-ratelimit-remaining-tokens").flatMap(Int.init))
        )
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
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
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
    func watchStop(source: RowSource) async {
        await control.waitForStop()
        await source.close()
        guard await control.reason == .interrupted else { return }
        try? await Task.sleep(for: .milliseconds(Int(options.gracePeriod * 1000)))
        await control.cancelWorkers()
    }
}

/// The run's lease owner id: `host/pid/nonce`, so a later run on the same machine can tell
/// that the owner died.
enum LeaseOwner {
    static func make() -> String {
        "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UUID().uuidString.prefix(8))"
    }

    static func isDeadLocal(_ owner: String) -> Bool {
        let parts = owner.split(separator: "/")
        guard parts.count == 3, parts[0] == ProcessInfo.processInfo.hostName, let pid = Int32(parts[1]) else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }
}
