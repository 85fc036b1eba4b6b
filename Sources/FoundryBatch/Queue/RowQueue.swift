import FoundryAuth
import Foundation

/// The life of a row in the queue.
public enum RowState: String, Sendable, CaseIterable, Codable {
    case pending, running, succeeded, failed
}

/// A row as the loader hands it to the queue: everything needed to send it, decided once.
public struct NewRow: Sendable, Equatable {
    /// The user's id (`custom_id` or `id`, or `<file>:<line>`).
    public var id: String
    /// The evaluation variant, or `""` outside a sweep.
    public var variant: String
    /// `file:line` of the input line, for messages (always that shape: ``SQLiteQueue``
    /// stores digits alone as a line of the load's own file).
    public var source: String
    public var api: ServiceAPI
    public var deployment: String
    /// The request body as compact JSON.
    public var body: String
    /// Extra keys of a simple line, as a JSON object, echoed into the output.
    public var metadata: String?
    /// Prompt characters / 4 + max tokens: what Azure charges against TPM up front.
    public var estimatedTokens: Int
    /// The prompt part of the estimate (the rest is the answer's token cap).
    public var estimatedPromptTokens: Int
    /// A digest of the input line, to tell a reload from a changed row.
    public var contentHash: String
}

/// What a load did with one row.
public enum LoadDisposition: Sendable, Equatable {
    case inserted
    /// Loaded before with the same content: nothing to do.
    case unchanged
    /// Already in this same load: the input repeats an id.
    case duplicate(firstSource: String)
    /// Loaded before from `source` with different content.
    case conflict(source: String)
}

/// Adds rows inside one load transaction; nothing is kept unless the whole load succeeds.
///
/// Each ``RowQueue`` implementation makes one for its own transaction, so a load needs to
/// know nothing of the store it fills.
public struct LoadTransaction {
    let insert: ([NewRow]) throws -> [LoadDisposition]
    /// How many rows the store would take at once: 1 where a row costs no round trip
    /// (SQLite, memory), more for a database across the network.
    public let chunkSize: Int

    /// A transaction that takes one row at a time, to `insert`; for implementations of ``RowQueue``.
    public init(insert: @escaping (NewRow) throws -> LoadDisposition) {
        self.insert = { rows in try rows.map(insert) }
        chunkSize = 1
    }

    /// A transaction that takes rows by the `chunk`, to `insert` (which returns one disposition per row, in order).
    public init(chunk: Int, insert: @escaping ([NewRow]) throws -> [LoadDisposition]) {
        self.insert = insert
        chunkSize = max(chunk, 1)
    }

    /// Adds `row`, or tells why it was not added.
    public func add(_ row: NewRow) throws -> LoadDisposition {
        try insert([row])[0]
    }

    /// Adds `rows` in order, telling for each whether it was added and why not.
    public func add(_ rows: [NewRow]) throws -> [LoadDisposition] {
        rows.isEmpty ? [] : try insert(rows)
    }
}

/// A row handed to a worker under a lease.
public struct ClaimedRow: Sendable, Equatable, Decodable {
    public var seq: Int64
    public var id: String
    public var variant: String
    public var api: ServiceAPI
    public var deployment: String
    public var body: String
    /// Answered tries so far (not counting this one).
    public var attempts: Int
    public var estimatedTokens: Int
    /// The target of the row's last try in a job with `targets:` (a retry goes elsewhere first).
    public var lastTarget: String? = nil
    /// Answers refused so far for not being the structured output asked for.
    public var outputRetries = 0
}

/// An error recorded against a row: a stable code, a message for people, and the HTTP status.
public struct RowError: Sendable, Equatable, Codable {
    /// An answer that is not the structured output its request asked for.
    public static let invalidOutput = "invalid_output"
    /// An answer cut off at its token cap, with `limits.truncated: fail`.
    public static let truncated = "truncated"

    public var code: String
    public var message: String
    public var statusCode: Int?

    public init(code: String, message: String, statusCode: Int? = nil) {
        self.code = code
        self.message = message
        self.statusCode = statusCode
    }
}

/// One answer from the service, as kept with the row.
public struct ResponseRecord: Sendable, Equatable {
    public var statusCode: Int
    /// The service's request id (`apim-request-id` / `x-request-id`).
    public var requestID: String?
    /// The `x-ms-client-request-id` we sent.
    public var clientRequestID: String
    /// The response body as valid JSON text (a non-JSON body is stored as a JSON string).
    public var body: String
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var totalTokens: Int?
    public var latencyMs: Double
    /// `length` when the answer was cut off at its token cap, `content_filter` when filtered.
    public var finish: String?

    public init(
        statusCode: Int, requestID: String?, clientRequestID: String, body: String,
        promptTokens: Int? = nil, completionTokens: Int? = nil, totalTokens: Int? = nil, latencyMs: Double, finish: String? = nil
    ) {
        self.finish = finish
        self.statusCode = statusCode
        self.requestID = requestID
        self.clientRequestID = clientRequestID
        self.body = body
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens
        self.latencyMs = latencyMs
    }
}

/// How a try of a row ended.
public enum RowOutcome: Sendable, Equatable {
    case succeeded(ResponseRecord)
    /// Try again no earlier than `at`; the error is kept as the row's last error.
    /// `countsAsAttempt` is false when the service only paced the job (a 429), so the row
    /// keeps its attempts for real failures.
    case retry(at: Date, error: RowError, response: ResponseRecord?, countsAsAttempt: Bool = true)
    case failed(error: RowError, response: ResponseRecord?)
}

/// A finished try to commit: the row, the lease it was done under, and the outcome.
public struct Completion: Sendable, Equatable {
    public var seq: Int64
    public var owner: String
    public var outcome: RowOutcome
    /// The `x-ms-client-request-id` of the try, kept even when no answer came (a timeout),
    /// since the request may have reached the service.
    public var clientRequestID: String?
    /// The `targets:` entry the try went to; nil for a job without `targets:`.
    public var target: String?
    /// The batch that answered the try; nil for an online try.
    public var batch: Int64?

    public init(seq: Int64, owner: String, outcome: RowOutcome, clientRequestID: String? = nil, target: String? = nil, batch: Int64? = nil) {
        self.seq = seq
        self.owner = owner
        self.outcome = outcome
        self.clientRequestID = clientRequestID
        self.target = target
        self.batch = batch
    }
}

/// Which failed rows `retry` puts back.
public struct RequeueFilter: Sendable, Equatable {
    public var statusCodes: [Int] = []
    public var errorCodes: [String] = []
    public init(statusCodes: [Int] = [], errorCodes: [String] = []) {
        self.statusCodes = statusCodes
        self.errorCodes = errorCodes
    }
}

/// Row counts and token sums, for `status` and the run summary.
public struct QueueCounts: Sendable, Equatable {
    public var variant: String = ""
    public var pending = 0
    public var running = 0
    public var succeeded = 0
    public var failed = 0
    public var promptTokens = 0
    public var completionTokens = 0
    /// The part of the tokens answered by batches, billed at `prices.batch_factor`.
    public var batchPromptTokens = 0
    public var batchCompletionTokens = 0
    /// Answers cut off at their token cap, and answers the content filter stopped.
    public var truncated = 0
    public var filtered = 0
    public var total: Int { pending + running + succeeded + failed }
    public init() {}
}

/// The job's answers by target and HTTP status, over every run of the job's state.
///
/// A try is counted once it was answered and recorded: each success, and each try that
/// ended in an error (the attempt history), a batch's lines included.
public struct QueueTally: Sendable, Equatable {
    public struct Answers: Sendable, Equatable, Decodable {
        /// The target's name; nil for a job without `targets:`.
        public var target: String?
        /// The HTTP status; nil when no HTTP answer came (a timeout, a lost connection).
        public var status: Int?
        public var count: Int

        public init(target: String?, status: Int?, count: Int) {
            (self.target, self.status, self.count) = (target, status, count)
        }
    }

    /// By target, then status (no status first).
    public var answers: [Answers] = []
    /// When the newest succeeded row ended.
    public var lastSuccess: Date?

    public init(answers: [Answers] = [], lastSuccess: Date? = nil) {
        self.answers = answers.sorted { ($0.target ?? "", $0.status ?? -1) < ($1.target ?? "", $1.status ?? -1) }
        self.lastSuccess = lastSuccess
    }
}

/// What `status` shows beyond counts: latency, attempts, throttling and the common errors.
public struct QueueReport: Sendable, Equatable {
    public struct VariantFigures: Sendable, Equatable {
        public var counts: QueueCounts
        /// Latency of succeeded rows, milliseconds.
        public var latencyP50: Double?
        public var latencyP95: Double?
        /// Tries answered so far, all rows of the variant.
        public var attempts: Int
    }

    public struct ErrorFigure: Sendable, Equatable, Decodable {
        public var code: String
        public var count: Int
        public var exampleID: String
        public var exampleMessage: String
    }

    public var job: VariantFigures
    public var variants: [VariantFigures]
    /// 429 answers recorded in the attempt history.
    public var throttled: Int
    /// Failed rows grouped by error code, most frequent first.
    public var errors: [ErrorFigure]
    /// Estimated prompt tokens of the rows not yet done, and their answers' token caps.
    public var pendingPromptTokens: Int
    public var pendingCompletionCap: Int
    public var pendingRows: Int
    /// Per target of a job with `targets:`, by name; empty otherwise.
    public var targets: [TargetFigures] = []
    /// The job's batches at the provider, by number.
    public var batches: [BatchRecord] = []
    /// Median latency of rows answered online (not by a batch), milliseconds.
    public var onlineLatencyP50: Double?

    /// What one target did: tries it answered, its 429s, tokens, latency, and its parking.
    public struct TargetFigures: Sendable, Equatable {
        public var name: String
        /// Answered tries: successes plus every try that ended in an error.
        public var requests = 0
        public var throttled = 0
        public var promptTokens = 0
        public var completionTokens = 0
        public var latencyP50: Double?
        public var truncated = 0
        public var filtered = 0
        /// When the target is parked: until when (nil: for the rest of that run), and why.
        public var parking: Parking?
        /// Rows whose last try went to this target, by how they ended.
        public var succeeded = 0
        public var failed = 0
        public var latencyP95: Double?
        /// The part of the tokens answered by batches, billed at `prices.batch_factor`.
        public var batchPromptTokens = 0
        public var batchCompletionTokens = 0

        /// The target's rows and tokens as counts, for the one cost formula.
        public var counts: QueueCounts {
            var counts = QueueCounts(variant: name)
            (counts.succeeded, counts.failed, counts.truncated, counts.filtered) = (succeeded, failed, truncated, filtered)
            (counts.promptTokens, counts.completionTokens) = (promptTokens, completionTokens)
            (counts.batchPromptTokens, counts.batchCompletionTokens) = (batchPromptTokens, batchCompletionTokens)
            return counts
        }
    }

    /// Why a run stopped sending to a target, as recorded by the run.
    public struct Parking: Sendable, Equatable {
        public var until: Date?
        public var reason: String
        public var at: Date
    }
}

/// What `report` draws beyond ``QueueReport``: when rows ended, how long they took, and a
/// sweep's answers side by side.
///
/// Everything here is aggregated or sampled in the store, so its size does not grow with the job.
public struct ReportDetails: Sendable, Equatable {
    /// Rows that ended (succeeded or failed) in one slice of the run's time.
    public struct TimeBin: Sendable, Equatable {
        public var start: Date
        public var succeeded = 0
        public var failed = 0
    }

    /// Succeeded rows whose latency falls in `[lower, upper)` milliseconds (the last bin up to
    /// the 99th percentile includes it; `upper` nil: the rows above it).
    public struct LatencyBin: Sendable, Equatable {
        public var lower: Double
        public var upper: Double?
        public var count: Int
    }

    /// One variant's answer to a row of a sweep.
    public struct Answer: Sendable, Equatable {
        public var variant: String
        public var state: RowState
        /// The answer's text (cut to the limit asked for), `error: <code>` for a failed row,
        /// nil while the row is not done.
        public var text: String?
        public var latencyMs: Double?
        public var completionTokens: Int?
        /// Why the answer ended (`stop`, `length`, `content_filter`), when the service said.
        public var finish: String?
    }

    /// One input row of a sweep: its prompt and each variant's answer.
    public struct Comparison: Sendable, Equatable {
        public var id: String
        public var seq: Int64
        /// The last user message of the first variant's request (cut to the limit).
        public var prompt: String?
        /// Whether the finished variants' answers differ (by text, an error counting as its code).
        public var disagree: Bool
        /// In the order the row's variants were loaded (the job's order).
        public var answers: [Answer]
    }

    /// When the first and the last row ended; nil before any did.
    public var firstFinished: Date?
    public var lastFinished: Date?
    /// The time between the first and the last end, in equal bins.
    public var throughput: [TimeBin] = []
    public var binSeconds: Double = 0
    /// Latency of succeeded rows answered online (or of batch rows, in a job run by batches alone).
    public var latency: [LatencyBin] = []
    /// Whether ``latency`` is of batch rows (each row's latency is its batch's turnaround).
    public var latencyOfBatches = false
    /// Rows with more than one variant: those whose answers differ first, then input order.
    public var comparisons: [Comparison] = []
    /// `status`'s figures, read with the rest (one snapshot: the totals and the charts agree).
    public var report: QueueReport

    public init(report: QueueReport) {
        self.report = report
    }

    /// The latency histogram of `sample`'s online rows (or, with none, of all its rows,
    /// which then are batch rows): `bins` equal bins up to the 99th percentile, and one more
    /// for the rows above it when there are any.
    mutating func chartLatency(of sample: LatencySample, bins: Int) {
        let sorted = sample.online.isEmpty ? sample.job : sample.online
        latencyOfBatches = sample.online.isEmpty && !sorted.isEmpty
        guard let p99 = LatencySample.percentile(sorted, 0.99) else { return }
        let width = Self.latencyWidth(p99: p99, count: bins)
        var counts = [Int](repeating: 0, count: bins + 1)
        for latency in sorted { counts[latency > p99 ? bins : min(Int(max(latency, 0) / width), bins - 1)] += 1 }
        latency = (0..<bins).map { LatencyBin(lower: Double($0) * width, upper: Double($0 + 1) * width, count: counts[$0]) }
        if counts[bins] > 0 { latency.append(.init(lower: Double(bins) * width, upper: nil, count: counts[bins])) }
    }

    /// The bins a throughput chart over `[first, last]` uses: at most `count`, at least a second each.
    static func timeBins(first: Date, last: Date, count: Int) -> (width: Double, count: Int) {
        let span = max(last.timeIntervalSince(first), 0)
        let width = max(span / Double(max(count, 1)), 1)
        return (width, min(count, Int((span / width).rounded(.down)) + 1))
    }

    /// The bin width of a latency histogram whose bins end at `p99` (the rest go to one last bin).
    static func latencyWidth(p99: Double, count: Int) -> Double {
        max(p99 / Double(max(count, 1)), 0.001)
    }

    /// `text` cut to `limit` characters, with an ellipsis when something was cut.
    static func cut(_ text: String, _ limit: Int) -> String {
        text.count > limit ? String(text.prefix(limit)) + "…" : text
    }

    /// Sorts comparisons as the report shows them: disagreements first, then input order.
    static func ordered(_ comparisons: [Comparison], limit: Int) -> [Comparison] {
        Array(comparisons.sorted { ($0.disagree ? 0 : 1, $0.seq) < ($1.disagree ? 0 : 1, $1.seq) }.prefix(limit))
    }
}

/// A finished row for the exporter, in input order.
public struct ExportRow: Sendable {
    public var seq: Int64
    public var id: String
    public var variant: String
    public var state: RowState
    public var attempts: Int
    public var metadata: String?
    public var statusCode: Int?
    public var requestID: String?
    public var clientRequestID: String?
    public var response: String?
    public var error: RowError?
    /// The target of the last try, in a job with `targets:`.
    public var target: String?
}

/// The queue: the single source of truth about every row.
///
/// Rows move pending -> running (under a lease) -> succeeded | failed, or back to pending
/// when a try is to be repeated, a lease expires or a run is interrupted. Every method is
/// safe to call from several tasks at once; ``SQLiteQueue`` also from several processes
/// on the same job.
public protocol RowQueue: Sendable {
    /// Runs `body` in one transaction; a thrown error discards every row it added.
    ///
    /// `body` runs synchronously inside the transaction, and holds the queue's writer for
    /// its length: a million-row load must not pay a suspension per row. It may run more
    /// than once: a queue across a network that loses its transaction runs it again from
    /// the start, so it reads its input afresh each time.
    func withLoad<T: Sendable>(source: String, _ body: (LoadTransaction) throws -> T) async throws -> T

    /// Claims up to `limit` due pending rows for `owner` until `leaseUntil`, in input order.
    func claim(owner: String, limit: Int, leaseUntil: Date, now: Date) async throws -> [ClaimedRow]
    /// Pushes the lease expiry of every row `owner` holds.
    func extendLeases(owner: String, until: Date) async throws
    /// Commits outcomes, each in the same transaction that ends or reschedules its row.
    ///
    /// A completion whose lease was lost (expired and taken by another process) is dropped.
    /// An outcome with an error is also kept in the row's attempt history.
    /// - Returns: how many completions were applied.
    @discardableResult
    func complete(_ completions: [Completion], now: Date) async throws -> Int
    /// Returns rows `owner` holds to pending (all of them, or the given ones).
    func release(owner: String, seqs: [Int64]?) async throws
    /// Returns rows whose lease expired to pending. - Returns: how many.
    @discardableResult
    func reclaimExpired(now: Date) async throws -> Int
    /// Puts failed rows matching `filter` back to pending, with their attempts reset.
    /// - Returns: how many.
    func requeueFailed(_ filter: RequeueFilter) async throws -> Int
    /// When the next pending row becomes due (`nil`: none pending), and how many rows are running.
    func activity() async throws -> (nextDue: Date?, running: Int)
    /// The owners holding leases now, to find rows of processes that died.
    func leaseOwners() async throws -> [String]
    /// Counts by state, for the job and for each variant.
    func counts() async throws -> (job: QueueCounts, variants: [QueueCounts])
    /// Latency percentiles, attempts, 429s and the most frequent errors, for `status`.
    func report() async throws -> QueueReport
    /// The report's figures (``report()``'s), charts and a sweep's side-by-side sample, in one
    /// read: `bins` throughput bins and `bins / 2` latency bins, up to `comparisons` rows,
    /// texts cut to `textLimit` characters.
    func details(bins: Int, comparisons: Int, textLimit: Int) async throws -> ReportDetails
    /// Answered tries by target and status, and the newest success: cheap enough to read
    /// every few seconds while a run works (the metrics file).
    func tally() async throws -> QueueTally
    /// Records that this run parked `target` (until `until`, nil: for the rest of the run).
    func park(target: String, until: Date?, reason: String, at: Date) async throws
    /// Forgets earlier runs' parkings: a new run tries every target again.
    func clearParkings() async throws
    /// Says that `owner` is running the job now, forgets runners not seen since `staleBefore`,
    /// and returns how many run it: the processes that share each target's quota.
    func checkIn(owner: String, now: Date, staleBefore: Date) async throws -> Int
    /// Says that `owner` stopped running the job.
    func checkOut(owner: String) async throws
    // MARK: Batches

    /// The due pending rows by model and API, each group with its rows and stored bytes.
    func pendingGroups(now: Date) async throws -> [PendingGroup]
    /// Binds due pending rows of `cut`'s model and API, in input order, to a new batch (at
    /// least one row, then as many as fit `maxRows` and `maxBytes`), in one transaction.
    ///
    /// The rows become `running` under ``BatchRecord/owner`` with a lease that never
    /// expires: they belong to the batch until it is collected. - Returns: nil when none is due.
    func cutBatch(_ cut: BatchCut, now: Date) async throws -> BatchRecord?
    /// Writes the batch's phase, ids, status and counts (everything but its rows).
    func updateBatch(_ batch: BatchRecord) async throws
    /// Every batch of the job, by number.
    func batches() async throws -> [BatchRecord]
    /// Calls `body` with every row the batch still holds, in input order, streaming.
    func forEachBatchLine(number: Int64, _ body: (BatchLine) throws -> Void) async throws
    /// Claims batch `number` for `owner` until `until`: when nobody holds it, `owner` does,
    /// the claim expired, or its holder is `replacing` (a process known dead).
    /// - Returns: whether `owner` holds it now.
    func claimBatch(_ number: Int64, owner: String, until: Date, now: Date, replacing: String?) async throws -> Bool
    /// Asks for batch `number` to be cancelled, whoever holds it: its holder cancels it at the
    /// provider on its next round. (``updateBatch(_:)`` never clears the request.)
    func requestCancel(_ number: Int64) async throws
    /// Lets go of every batch `owner` holds, or pushes their claims to `until`.
    func renewBatchClaims(owner: String, until: Date?) async throws

    /// Lets go of the store (its files or connections); the session that opened the queue calls it last.
    func close()

    /// Calls `body` with every finished row in input order, streaming.
    ///
    /// `body` runs synchronously inside one read, so the rows it sees are one snapshot; a
    /// queue across a network that loses its connection goes on after the last row `body`
    /// took, in a new read (rows that finished meanwhile after that row are included).
    func forEachFinished(_ body: (ExportRow) throws -> Void) async throws
}

extension QueueReport {
    /// The element of `sorted` (ascending) at quantile `p`: the one percentile rule every
    /// queue implementation uses.
    static func percentileOffset(count: Int, _ p: Double) -> Int? {
        guard count > 0 else { return nil }
        return min(count - 1, Int((Double(count) * p).rounded(.down)))
    }
}

extension QueueReport {
    /// The job's and each variant's figures from the counts' groups and the latencies: what
    /// every database queue computes alike once it has read them.
    static func figures(_ groups: [StateCount], latencies: LatencySample) -> (job: VariantFigures, variants: [VariantFigures]) {
        let (job, variants) = QueueCounts.tally(groups)
        var attempts: [String: Int] = [:]
        for group in groups { attempts[group.variant, default: 0] += group.attempts }
        func figures(_ counts: QueueCounts, variant: String?) -> VariantFigures {
            let sample = variant.map { latencies.byVariant[$0] ?? [] } ?? latencies.job
            return VariantFigures(
                counts: counts, latencyP50: LatencySample.percentile(sample, 0.5), latencyP95: LatencySample.percentile(sample, 0.95),
                attempts: variant.map { attempts[$0] ?? 0 } ?? attempts.values.reduce(0, +)
            )
        }
        return (figures(job, variant: nil), variants.map { figures($0, variant: $0.variant) })
    }
}

/// The latencies of the succeeded rows, read in one pass and grouped in memory: a
/// percentile per group by `ORDER BY ... OFFSET` sorts the whole table each time, seconds
/// apiece at a million rows.
struct LatencySample {
    var job: [Double] = []
    var byVariant: [String: [Double]] = [:]
    var byTarget: [String: [Double]] = [:]
    /// Rows answered online (not by a batch).
    var online: [Double] = []

    mutating func add(_ latency: Double, variant: String, target: String?, online isOnline: Bool) {
        job.append(latency)
        byVariant[variant, default: []].append(latency)
        if let target { byTarget[target, default: []].append(latency) }
        if isOnline { online.append(latency) }
    }

    /// Sorts every group, once, before percentiles are read.
    mutating func sort() {
        job.sort()
        online.sort()
        for key in byVariant.keys { byVariant[key]?.sort() }
        for key in byTarget.keys { byTarget[key]?.sort() }
    }

    /// Quantile `p` of an ascending list, by ``QueueReport/percentileOffset(count:_:)``.
    static func percentile(_ sorted: [Double]?, _ p: Double) -> Double? {
        guard let sorted, let offset = QueueReport.percentileOffset(count: sorted.count, p) else { return nil }
        return sorted[offset]
    }
}

/// A row already queued under the id of a row being loaded.
struct QueuedRow: Sendable, Decodable {
    var loadID: Int64
    var contentHash: String
    var source: String

    /// What a load numbered `loadID` does with `row`, whose id and variant are this row's.
    func disposition(of row: NewRow, loadID: Int64) -> LoadDisposition {
        if self.loadID == loadID { return .duplicate(firstSource: source) }
        if contentHash != row.contentHash { return .conflict(source: source) }
        return .unchanged
    }
}

/// Rows and answered tokens of one variant in one state: what ``QueueCounts`` is summed from.
struct StateCount: Sendable, Decodable {
    var variant: String
    var state: RowState
    var rows: Int
    var promptTokens: Int
    var completionTokens: Int
    var batchPromptTokens = 0
    var batchCompletionTokens = 0
    var truncated = 0
    var filtered = 0
    var attempts = 0
}

/// Estimated tokens of the rows not yet done, for `status` and `--dry-run`.
struct PendingFigures: Sendable, Decodable {
    var rows = 0
    var promptTokens = 0
    var completionCap = 0
}

extension QueueCounts {
    /// The job's counts and each variant's, from per-variant, per-state groups.
    static func tally(_ groups: [StateCount]) -> (job: QueueCounts, variants: [QueueCounts]) {
        var job = QueueCounts()
        var byVariant: [String: QueueCounts] = [:]
        for group in groups {
            var counts = byVariant[group.variant] ?? QueueCounts(variant: group.variant)
            counts.add(group)
            job.add(group)
            byVariant[group.variant] = counts
        }
        let variants = byVariant.values.filter { !$0.variant.isEmpty }.sorted { $0.variant < $1.variant }
        return (job, variants)
    }

    init(variant: String) {
        self.init()
        self.variant = variant
    }

    mutating func add(_ group: StateCount) {
        switch group.state {
        case .pending: pending += group.rows
        case .running: running += group.rows
        case .succeeded: succeeded += group.rows
        case .failed: failed += group.rows
        }
        promptTokens = Bounded.add(promptTokens, group.promptTokens)
        completionTokens = Bounded.add(completionTokens, group.completionTokens)
        batchPromptTokens = Bounded.add(batchPromptTokens, group.batchPromptTokens)
        batchCompletionTokens = Bounded.add(batchCompletionTokens, group.batchCompletionTokens)
        truncated += group.truncated
        filtered += group.filtered
    }
}

/// A row's state and last answer as every queue keeps them: the error's parts in their
/// own fields, as in the `rows` table.
struct RowRecord: Sendable, Decodable {
    var seq: Int64
    var id: String
    var variant: String
    var state: RowState
    var attempts: Int
    var metadata: String?
    var statusCode: Int?
    var requestID: String?
    var clientRequestID: String?
    var response: String?
    var errorCode: String?
    var errorMessage: String?
    var target: String?

    var exportRow: ExportRow {
        ExportRow(
            seq: seq, id: id, variant: variant, state: state, attempts: attempts, metadata: metadata, statusCode: statusCode,
            requestID: requestID, clientRequestID: clientRequestID, response: response,
            error: errorCode.map { RowError(code: $0, message: errorMessage ?? "", statusCode: statusCode) }, target: target
        )
    }
}
