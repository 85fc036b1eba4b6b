import AsyncHTTPClient
import FoundryAuth
import Foundation
import Logging

extension ServiceTarget {
    /// The target of `spec` whose endpoint is a URL, its credential from the environment.
    ///
    /// - Parameter credentials: token providers already made for this run, shared by
    ///   targets of the same credential kind (one provider, one token, per credential).
    /// - Throws: ``UsageError`` for a plain-http endpoint on another machine with a
    ///   credential; ``JobFileError`` for a target's `api_key_env` that is not set;
    ///   ``FatalCondition`` when the credential is not set up.
    static func resolve(
        spec: JobFile.Target, job: JobFile, baseURL: String, environment: CredentialEnvironment, http: HTTPClient,
        credentials: CredentialCache
    ) throws -> ServiceTarget {
        let auth = spec.auth
        if auth != .none, let url = URL(string: baseURL), !TransportSecurity.maySendSecret(to: url) {
            throw UsageError(
                "\(job.path): endpoint: \(baseURL) is plain http to another machine; a key or token is never sent that way. Use https (or http to localhost)."
            )
        }
        let authorization: RequestAuthorization
        switch auth {
        case .none:
            authorization = .none
        case .apiKey:
            let variable = spec.apiKeyEnv
            guard let key = environment[variable] else {
                if job.isPooled {
                    throw JobFileError(
                        file: job.path, line: spec.line, key: "targets[\(spec.name)].api_key_env",
                        message: "\(variable) is not set; export the key of target '\(spec.name)' (Keys and Endpoint of its resource) in it"
                    )
                }
                throw FatalCondition("auth: api-key needs the key in \(variable) (Keys and Endpoint of the resource)")
            }
            guard TransportSecurity.isHeaderSafe(key) else {
                throw FatalCondition(
                    "\(variable) holds a character that cannot go in an HTTP header (a space, a line break, a non-ASCII character); copy the key again from Keys and Endpoint of the resource"
                )
            }
            authorization = .apiKey(key)
        default:
            authorization = .bearer(try credentials.provider(kind: auth, environment: environment, http: http))
        }
        return ServiceTarget(baseURL: baseURL, apiVersion: spec.apiVersion, authorization: authorization)
    }
}

/// `run` once the rows are loaded: process every pending row with the job's engine,
/// export, and summarise.
public enum BatchRun {
    /// Runs `session`'s pending rows against `service`.
    ///
    /// - Throws: ``StorageError`` when the files cannot be written (before sending, exit 2)
    ///   or the queue fails (after sending, exit 4).
    public static func execute(
        session: JobSession, service: ServiceSession, options: RunOptions, control: RunControl,
        logger: Logger = Logger(label: "foundry-batch.run")
    ) async throws -> RunSummary {
        let started = Date()
        let paths = session.paths
        try paths.checkWritable()
        let runner = Runner(
            limits: session.settings.limits, queue: session.queue, service: service, options: options, control: control, logger: logger
        )
        let metrics = paths.metrics.map { path in
            MetricsFile(path: path, logger: logger) { [queue = session.queue, pool = runner.pool, job = session.job] inProgress in
                let counts = try await queue.counts().job
                return RunMetrics(
                    job: job.name, counts: counts, tally: try await queue.tally(), cost: job.prices?.cost(counts),
                    tokenRequests: await pool.tokenRequests, duration: Date().timeIntervalSince(started), inProgress: inProgress
                )
            }
        }
        await metrics?.start()
        var counters = RunCounters()
        var stop: StopReason?
        var export = ExportReport(output: paths.output, errors: paths.errors)
        // Nil when the state database went away with the run and could not count.
        var counts: QueueCounts?
        var live = 0
        do {
            (counters, stop) = try await run(session: session, service: service, runner: runner, options: options, control: control, logger: logger)
            do {
                export = try await session.export()
            } catch let error as StorageError {
                // The answers are in the state database; the summary still tells what was
                // sent. A stop that came first (an interrupt, a fatal condition) keeps its code.
                if stop == nil { stop = .storageFailed(error.afterSending()) } else { logger.error("\(error.afterSending().description)") }
            } catch let error as StateUnreachable {
                if stop == nil { stop = .fatal(FatalCondition(error.description)) } else { logger.error("\(error.description)") }
            }
            do {
                counts = try await session.queue.counts().job
                live = try await session.queue.batches().count(where: \.phase.isLive)
            } catch is StateUnreachable where stop != nil {
                // The database went away with the run: the summary still has what this run sent.
            }
        } catch {
            // The last file is written whatever ended the run, so a collector never keeps
            // `run_in_progress 1` from a run that is gone.
            await metrics?.finish()
            if let error = error as? StorageError { throw error.afterSending() }
            throw error
        }
        await metrics?.finish()
        var summary = RunSummary(
            job: session.job.name, counts: counts ?? QueueCounts(), counters: counters, tokenRequests: await runner.pool.tokenRequests,
            elapsed: Date().timeIntervalSince(started), export: export, stop: stop, prices: session.job.prices
        )
        summary.liveBatches = live
        summary.countsKnown = counts != nil
        return summary
    }

    /// The job's engine over its rows: online, batch, or batches then online (auto).
    static func run(
        session: JobSession, service: ServiceSession, runner: Runner, options: RunOptions, control: RunControl, logger: Logger
    ) async throws -> (RunCounters, StopReason?) {
        let job = session.job
        let engine: any RowEngine
        switch job.engine {
        case .online:
            let live = try await session.queue.batches().filter(\.phase.isLive)
            if !live.isEmpty {
                let rows = live.reduce(0) { $0 + $1.rows }
                return (
                    RunCounters(),
                    .fatal(FatalCondition("\(live.count) batch\(live.count == 1 ? "" : "es") of this job (\(rows) rows) are not collected yet (at the provider, or waiting to be submitted); run it with engine: batch to collect them, or foundry-batch cancel to take their rows back"))
                )
            }
            engine = runner
        case .batch:
            engine = BatchEngine(session: session, service: service, control: control, options: options, logger: logger)
        case .auto:
            let deadline = (job.batch.finishBy ?? JobFile.TimeOfDay("00:00")!).next(after: Date())
            let settings = session.settings
            logger.notice("engine auto: every row done by \(RowDecision.clockTime(deadline))")
            let batches = BatchEngine(session: session, service: service, control: control, options: options, logger: logger) { report in
                let online = OnlineEstimate(settings: settings, report: report).seconds(rows: report.pendingRows)
                return Date().addingTimeInterval(online * 1.25 + OnlineEstimate.switchMargin(pollInterval: settings.job.batch.pollInterval)) >= deadline
            }
            engine = AutoEngine(batches: batches, online: runner, control: control)
        }
        return try await engine.run()
    }

    /// Cancels the job's live batches and collects what they finished (`cancel`); the rest
    /// of their rows return to pending. - Returns: the batches cancelled.
    static func cancel(session: JobSession, service: ServiceSession, control: RunControl, logger: Logger) async throws -> Int {
        let live = try await session.queue.batches().count(where: \.phase.isLive)
        let engine = BatchEngine(session: session, service: service, control: control, options: RunOptions(progress: .none), logger: logger)
        _ = try await engine.runStoppable(.cancel)
        return live
    }
}

/// How long the rows left would take online: the targets' pacing and the latency measured
/// so far (10 s per answer until the job has online answers), whichever bounds the rate.
struct OnlineEstimate {
    let settings: JobSettings
    let report: QueueReport

    /// An answer's latency before any was measured: a long answer of a reasoning model.
    static let assumedLatency: TimeInterval = 10

    /// The time a switch to online takes before the first online request: two polls to see
    /// the batches cancelled, ten for the provider's `cancelling` (Azure's lasts up to ten
    /// minutes), and 5 s.
    static func switchMargin(pollInterval: TimeInterval) -> TimeInterval {
        2 * pollInterval + min(600, 10 * pollInterval) + 5
    }

    /// Rows per second online.
    var rate: Double {
        let limits = settings.limits
        let latency = report.onlineLatencyP50.map { max($0 / 1000, 0.01) } ?? Self.assumedLatency
        let byWorkers = Double(limits.concurrency) / latency
        let tokensPerRow = report.pendingRows > 0 ? Double(report.pendingPromptTokens + report.pendingCompletionCap) / Double(report.pendingRows) : 1
        var paced = 0.0
        for target in settings.job.targetsToUse {
            let requests = (target.requestsPerMinute ?? limits.requestsPerMinute).map { Double($0) / 60 }
            let tokens = (target.tokensPerMinute ?? limits.tokensPerMinute).map { Double($0) / 60 / max(tokensPerRow, 1) }
            // A target without pacing is bounded by the workers alone.
            guard requests != nil || tokens != nil else { return byWorkers }
            paced += min(requests ?? .infinity, tokens ?? .infinity)
        }
        return min(byWorkers, paced)
    }

    func seconds(rows: Int) -> TimeInterval {
        Double(rows) / max(rate, 1e-6)
    }
}

extension RunCounters {
    mutating func add(_ other: RunCounters) {
        requests += other.requests
        retries += other.retries
        throttled += other.throttled
        succeeded += other.succeeded
        failed += other.failed
        promptTokens += other.promptTokens
        completionTokens += other.completionTokens
    }
}
