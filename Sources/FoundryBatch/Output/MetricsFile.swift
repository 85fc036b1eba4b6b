import Foundation
import Logging

/// What the metrics file shows at one moment of a run: the job's state and this run's figures.
///
/// Rows, answers, 429s, tokens, cost and the last success come from the state database, so
/// they count every run of the job (a cron job's counters grow from night to night and
/// restart only with a new state file); token requests and the duration are this run's.
public struct RunMetrics: Sendable, Equatable {
    public var job: String
    public var counts: QueueCounts
    public var tally: QueueTally
    /// Estimated cost from the job's `prices:`; nil without prices.
    public var cost: Double?
    /// Token requests this run made to Entra ID (one per refresh, per credential).
    public var tokenRequests: Int
    /// Seconds since this run started.
    public var duration: TimeInterval
    /// True while the run works; false in the file written at its end.
    public var inProgress: Bool

    public init(
        job: String, counts: QueueCounts, tally: QueueTally, cost: Double?, tokenRequests: Int, duration: TimeInterval,
        inProgress: Bool
    ) {
        (self.job, self.counts, self.tally, self.cost) = (job, counts, tally, cost)
        (self.tokenRequests, self.duration, self.inProgress) = (tokenRequests, duration, inProgress)
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4), for
    /// node_exporter's textfile collector: HELP and TYPE before each family, one sample a line.
    public var prometheusText: String {
        var text = PrometheusTextBuilder(job: job)
        text.family("rows", .gauge, "Rows of the job by state.")
        for (state, count) in [("pending", counts.pending), ("running", counts.running), ("succeeded", counts.succeeded), ("failed", counts.failed)] {
            text.sample("rows", ["state": state], Double(count))
        }
        text.family(
            "requests_total", .counter,
            "Answered tries by target and HTTP status (status none: no HTTP answer, as a timeout; a batch's lines count as tries)."
        )
        for answers in tally.answers {
            text.sample("requests_total", ["target": answers.target ?? "default", "status": answers.status.map(String.init) ?? "none"], Double(answers.count))
        }
        text.family("throttled_total", .counter, "Tries answered 429 Too Many Requests.")
        text.sample("throttled_total", [:], Double(tally.answers.filter { $0.status == 429 }.reduce(0) { $0 + $1.count }))
        text.family("tokens_total", .counter, "Tokens of the succeeded rows, as the service counted them.")
        text.sample("tokens_total", ["kind": "prompt"], Double(counts.promptTokens))
        text.sample("tokens_total", ["kind": "completion"], Double(counts.completionTokens))
        if let cost {
            text.family("cost_estimated", .gauge, "Estimated cost of the succeeded rows from the job's prices (batch rows at the batch price).")
            text.sample("cost_estimated", [:], cost)
        }
        text.family("token_requests_total", .counter, "Access-token requests this run made to Entra ID.")
        text.sample("token_requests_total", [:], Double(tokenRequests))
        text.family("run_duration_seconds", .gauge, "Seconds since this run started (at its end: how long it took).")
        text.sample("run_duration_seconds", [:], duration)
        text.family("run_in_progress", .gauge, "1 while a run works, 0 once it ended.")
        text.sample("run_in_progress", [:], inProgress ? 1 : 0)
        if let last = tally.lastSuccess {
            text.family("last_success_timestamp_seconds", .gauge, "When the newest succeeded row ended, in Unix seconds.")
            text.sample("last_success_timestamp_seconds", [:], last.timeIntervalSince1970)
        }
        return text.output
    }
}

/// Builds Prometheus text: every metric named `foundry_batch_<name>` with a `job` label.
struct PrometheusTextBuilder {
    enum Kind: String { case counter, gauge }

    let job: String
    var output = ""

    mutating func family(_ name: String, _ kind: Kind, _ help: String) {
        output += "# HELP foundry_batch_\(name) \(Self.escapeHelp(help))\n# TYPE foundry_batch_\(name) \(kind.rawValue)\n"
    }

    mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: Double) {
        var pairs = "job=\"\(Self.escapeLabel(job))\""
        for (key, label) in labels { pairs += ",\(key)=\"\(Self.escapeLabel(label))\"" }
        output += "foundry_batch_\(name){\(pairs)} \(Self.number(value))\n"
    }

    /// A label value may hold anything; the format escapes backslash, quote and line feed.
    static func escapeLabel(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n", "\r\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers without a fraction (counts stay exact), others in full precision.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// Writes a run's metrics to a file every 10 seconds and once at the end, each time under a
/// temporary name renamed into place, so a collector never reads half a file.
///
/// A write that fails is logged and tried again at the next tick: metrics never stop a run.
actor MetricsFile {
    let path: String
    let interval: Duration
    let logger: Logger
    let snapshot: @Sendable (_ inProgress: Bool) async throws -> RunMetrics
    var task: Task<Void, Never>?

    init(
        path: String, interval: Duration = .seconds(10), logger: Logger,
        snapshot: @escaping @Sendable (_ inProgress: Bool) async throws -> RunMetrics
    ) {
        (self.path, self.interval, self.logger, self.snapshot) = (path, interval, logger, snapshot)
    }

    /// Writes the first file now, then one per interval until ``finish()``.
    func start() async {
        await write(inProgress: true)
        let interval = interval
        task = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { return }
                await self.write(inProgress: true)
            }
        }
    }

    /// Stops the ticks and writes the run's last file.
    func finish() async {
        task?.cancel()
        await task?.value
        task = nil
        await write(inProgress: false)
    }

    func write(inProgress: Bool) async {
        do {
            let metrics = try await snapshot(inProgress)
            let file = try AtomicFileWriter(path: path)
            file.write(Array(metrics.prometheusText.utf8))
            try file.commit()
        } catch {
            logger.warning("cannot write the metrics file", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}
