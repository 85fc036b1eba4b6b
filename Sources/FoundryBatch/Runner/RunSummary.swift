import Foundation

/// Why a run stopped before every row was done.
public enum StopReason: Sendable, Equatable {
    /// A condition every row would hit (exit 3).
    case fatal(FatalCondition)
    /// SIGINT or SIGTERM (exit 130).
    case interrupted
    /// SIGINT or SIGTERM while the state database was out of reach (exit 130): the rows the
    /// run held could not be released and wait for their leases to expire; what to tell the user.
    case interruptedHolding(String)
    /// The state database or an output file failed after requests were sent (exit 4).
    case storageFailed(StorageError)
    /// The run stopped before sending anything (a bad input, a missing credential).
    case notStarted(message: String, exitStatus: ExitStatus)

    /// What the user reads about the stop.
    public var message: String {
        switch self {
        case .fatal(let condition): condition.description
        case .interrupted: "interrupted: in-flight rows were released; run the job again to resume"
        case .interruptedHolding(let message): message
        case .storageFailed(let error): error.description
        case .notStarted(let message, _): message
        }
    }
}

/// Counters of one run, for the summary, `--json` and progress.
public struct RunCounters: Sendable, Equatable {
    public var requests = 0
    public var retries = 0
    public var throttled = 0
    public var succeeded = 0
    public var failed = 0
    public var promptTokens = 0
    public var completionTokens = 0
    public init() {}
}

/// The outcome of `foundry-batch run`: what was done, and the exit status for cron.
public struct RunSummary: Sendable {
    public var job: String
    public var counts: QueueCounts
    public var counters: RunCounters
    public var tokenRequests: Int
    public var elapsed: TimeInterval
    public var export: ExportReport
    public var stop: StopReason?
    public var prices: JobFile.Prices?
    /// Batches still running at the provider when the run returned (`--no-wait`).
    public var liveBatches = 0
    /// False when the job's rows could not be counted at the end (its state database was
    /// out of reach): `--json` then gives null for them rather than zeros that look real.
    public var countsKnown = true

    public var exitStatus: ExitStatus {
        switch stop {
        case .fatal: .stopped
        case .interrupted, .interruptedHolding: .interrupted
        case .storageFailed: .storageFailed
        case .notStarted(_, let status): status
        case nil: liveBatches > 0 ? .batchesRunning : counts.failed > 0 ? .rowsFailed : .success
        }
    }

    /// Estimated cost from the job's prices and the job's token totals, batches' at the batch price.
    public var cost: Double? {
        countsKnown ? prices?.cost(counts) : nil
    }

    /// The contract's `--json` object.
    public var json: JSONValue {
        let count = { (value: Int) -> JSONValue in countsKnown ? .int(value) : .null }
        var pairs: [(String, JSONValue)] = [
            ("job", .string(job)), ("total", count(counts.total)), ("succeeded", count(counts.succeeded)),
            ("failed", count(counts.failed)), ("pending", count(counts.pending + counts.running)),
            ("requests", .int(counters.requests)), ("retries", .int(counters.retries)), ("throttled", .int(counters.throttled)),
            ("token_requests", .int(tokenRequests)), ("prompt_tokens", count(counts.promptTokens)),
            ("completion_tokens", count(counts.completionTokens)), ("elapsed_seconds", .double((elapsed * 1000).rounded() / 1000)),
            ("output", .string(export.output)), ("errors", .string(export.errors)),
        ]
        if let cost { pairs.append(("estimated_cost", .double((cost * 10000).rounded() / 10000))) }
        if liveBatches > 0 { pairs.append(("batches_running", .int(liveBatches))) }
        pairs.append(("truncated", count(counts.truncated)))
        pairs.append(("content_filtered", count(counts.filtered)))
        pairs.append(("exit_code", .int(Int(exitStatus.rawValue))))
        if let stop { pairs.append(("error", .string(stop.message))) }
        return .object(pairs)
    }

    static func lines(_ count: Int) -> String { count == 1 ? "1 line" : "\(count) lines" }

    /// The human summary.
    public var text: String {
        var lines = [
            countsKnown
                ? "\(job): \(counts.total) rows: \(counts.succeeded) succeeded, \(counts.failed) failed, \(counts.pending + counts.running) pending"
                    + (liveBatches > 0 && counts.running > 0 ? " (\(counts.running) of them in batches)" : "")
                : "\(job): the rows could not be counted (the state database is out of reach); `status` counts them once it is back",
            "  \(counters.requests) requests, \(counters.retries) retries (\(counters.throttled) throttled by 429), \(tokenRequests) token requests",
        ]
        if countsKnown {
            lines.append(
                "  tokens: \(counts.promptTokens) prompt + \(counts.completionTokens) completion" + (cost.map { String(format: ", estimated cost %.4f", $0) } ?? "")
            )
        }
        lines.append("  results: \(export.output) (\(Self.lines(export.succeeded)))")
        if export.failed > 0 { lines.append("  errors:  \(export.errors) (\(Self.lines(export.failed)))") }
        if counts.truncated + counts.filtered > 0 {
            lines.append("  \(counts.truncated) answers cut off at max_tokens (finish_reason length), \(counts.filtered) stopped by the content filter")
        }
        if liveBatches > 0 {
            lines.append(
                "  \(liveBatches) batch\(liveBatches == 1 ? "" : "es") not yet collected (running at the provider, or waiting to be submitted): run the job again to go on; status lists them"
            )
        }
        lines.append(String(format: "  %.1f s", elapsed))
        switch stop {
        case .fatal, .storageFailed, .notStarted: lines.append("stopped: \(stop?.message ?? "")")
        case .interrupted, .interruptedHolding:
            lines.append(liveBatches > 0 ? "interrupted: the batches keep running at the provider; run the job again to collect them" : stop?.message ?? "")
        case nil: break
        }
        return lines.joined(separator: "\n")
    }
}

extension RunSummary {
    /// The summary of a run that stopped on `error` before or while sending, so that
    /// `--json` prints one object on every exit once the job file was read.
    ///
    /// - Parameters:
    ///   - settings: the run's settings, when they resolved; `queue`, when it opened, gives the counts.
    public static func stopped(
        job: JobFile, settings: JobSettings?, queue: (any RowQueue)?, error: any UserFacingError, elapsed: TimeInterval
    ) async -> RunSummary {
        // Nil when the queue opened but could not count (its database away); zeros when it never opened.
        let counts: QueueCounts? = if let queue { try? await queue.counts().job } else { QueueCounts() }
        let stop: StopReason =
            if let storage = error as? StorageError, storage.exitStatus == .storageFailed { .storageFailed(storage) } else {
                .notStarted(message: error.description, exitStatus: error.exitStatus)
            }
        var summary = RunSummary(
            job: job.name, counts: counts ?? QueueCounts(), counters: RunCounters(), tokenRequests: 0, elapsed: elapsed,
            export: ExportReport(output: settings?.paths.output ?? "", errors: settings?.paths.errors ?? ""), stop: stop, prices: job.prices
        )
        summary.countsKnown = counts != nil
        return summary
    }
}
