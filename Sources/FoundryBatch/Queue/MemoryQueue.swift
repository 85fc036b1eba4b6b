import FoundryAuth
import Foundation
import Synchronization

/// A ``RowQueue`` held in this process's memory: the same contract as ``SQLiteQueue``
/// without the file, so it is lost when the process ends.
///
/// For tests (the queue suite runs against both implementations) and for embedding a run
/// that needs no resume. One lock guards every row, and a load holds it for its length:
/// another call meanwhile blocks its thread rather than suspending, so load before working.
///
/// ```swift
/// let queue = MemoryQueue()
/// let rows = try await queue.claim(owner: "w1", limit: 32, leaseUntil: .now + 60, now: .now)
/// ```
public final class MemoryQueue: RowQueue {
    struct Stored: Sendable {
        var row: NewRow
        var loadID: Int64
        /// The state, attempts and last answer, as the SQLite queue's columns hold them.
        var record: RowRecord
        var nextAttemptAt: Date = .distantPast
        var leaseOwner: String?
        var leaseExpiresAt: Date?
        var promptTokens: Int?
        var completionTokens: Int?
        var latencyMs: Double?
        /// The batch that answered the row's last try.
        var batch: Int64?
        var outputRetries = 0
        var finish: String?
        /// When the row last ended (succeeded or failed).
        var finishedAt: Date?

        init(seq: Int64, row: NewRow, loadID: Int64) {
            self.row = row
            self.loadID = loadID
            record = RowRecord(seq: seq, id: row.id, variant: row.variant, state: .pending, attempts: 0, metadata: row.metadata)
        }

        var seq: Int64 { record.seq }
        var state: RowState {
            get { record.state }
            set { record.state = newValue }
        }
        var attempts: Int {
            get { record.attempts }
            set { record.attempts = newValue }
        }
        var key: Key { Key(id: row.id, variant: row.variant) }
        var isRunning: Bool { state == .running }
        func isHeld(by owner: String) -> Bool { state == .running && leaseOwner == owner }

        mutating func returnToPending() {
            state = .pending
            leaseOwner = nil
            leaseExpiresAt = nil
        }
    }

    struct Key: Hashable, Sendable {
        var id: String
        var variant: String
    }

    struct Storage: Sendable {
        /// Rows by `seq - 1`: seqs are handed out in load order and never reused.
        var rows: [Stored] = []
        var index: [Key: Int] = [:]
        var loads: Int64 = 0
        /// The attempt history: status code and target, one per outcome that carried an error.
        var attempts: [(status: Int?, target: String?)] = []
        var parkings: [String: QueueReport.Parking] = [:]
        var runners: [String: Date] = [:]
        var batches: [BatchRecord] = []
    }

    let storage = Mutex(Storage())

    public init() {}

    /// Nothing to let go of.
    public func close() {}

    // MARK: Loading

    public func withLoad<T: Sendable>(source: String, _ body: (LoadTransaction) throws -> T) async throws -> T {
        try storage.withLock { committed in
            // Rows go to a copy, kept only when the whole body succeeds.
            let staging = Staging(committed)
            staging.storage.loads += 1
            let loadID = staging.storage.loads
            let result = try body(LoadTransaction { row in staging.add(row, source: source, loadID: loadID) })
            committed = staging.storage
            return result
        }
    }

    /// The storage a load writes to before it commits.
    final class Staging {
        var storage: Storage
        init(_ storage: Storage) { self.storage = storage }

        func add(_ row: NewRow, source: String, loadID: Int64) -> LoadDisposition {
            let key = Key(id: row.id, variant: row.variant)
            if let at = storage.index[key] {
                let existing = storage.rows[at]
                return QueuedRow(loadID: existing.loadID, contentHash: existing.row.contentHash, source: existing.row.source)
                    .disposition(of: row, loadID: loadID)
            }
            storage.index[key] = storage.rows.count
            storage.rows.append(Stored(seq: Int64(storage.rows.count + 1), row: row, loadID: loadID))
            return .inserted
        }
    }

    // MARK: Working

    public func claim(owner: String, limit: Int, leaseUntil: Date, now: Date) async throws -> [ClaimedRow] {
        storage.withLock { storage in
            var claimed: [ClaimedRow] = []
            for at in storage.rows.indices where claimed.count < limit {
                guard storage.rows[at].state == .pending, storage.rows[at].nextAttemptAt <= now else { continue }
                storage.rows[at].state = .running
                storage.rows[at].leaseOwner = owner
                storage.rows[at].leaseExpiresAt = leaseUntil
                let stored = storage.rows[at]
                claimed.append(
                    ClaimedRow(
                        seq: stored.seq, id: stored.row.id, variant: stored.row.variant, api: stored.row.api, deployment: stored.row.deployment,
                        body: stored.row.body, attempts: stored.attempts, estimatedTokens: stored.row.estimatedTokens,
                        lastTarget: stored.record.target, outputRetries: stored.outputRetries
                    )
                )
            }
            return claimed
        }
    }

    public func extendLeases(owner: String, until: Date) async throws {
        storage.withLock { storage in
            for at in storage.rows.indices where storage.rows[at].isHeld(by: owner) { storage.rows[at].leaseExpiresAt = until }
        }
    }

    @discardableResult
    public func complete(_ completions: [Completion], now: Date) async throws -> Int {
        storage.withLock { storage in
            var applied = 0
            for completion in completions {
                let at = Int(completion.seq) - 1
                guard storage.rows.indices.contains(at), storage.rows[at].isHeld(by: completion.owner) else { continue }
                Self.apply(completion, to: &storage.rows[at])
                if storage.rows[at].state != .pending { storage.rows[at].finishedAt = now }
                if let error = completion.outcome.error {
                    storage.attempts.append((completion.outcome.response?.statusCode ?? error.statusCode, completion.target))
                }
                applied += 1
            }
            return applied
        }
    }

    /// Ends or reschedules the row as ``SQLiteQueue`` does: every answer field is the last try's.
    static func apply(_ completion: Completion, to row: inout Stored) {
        let outcome = completion.outcome
        switch outcome {
        case .succeeded: row.state = .succeeded
        case .failed: row.state = .failed
        case .retry(let at, _, _, _): row.state = .pending; row.nextAttemptAt = at
        }
        if outcome.countsAsAttempt { row.attempts += 1 }
        if row.state != .pending { row.nextAttemptAt = .distantPast }
        row.leaseOwner = nil
        row.leaseExpiresAt = nil
        let response = outcome.response, error = outcome.error
        row.record.statusCode = response?.statusCode ?? error?.statusCode
        row.record.requestID = response?.requestID
        row.record.clientRequestID = response?.clientRequestID ?? completion.clientRequestID
        row.record.response = response?.body
        row.record.errorCode = error?.code
        row.record.errorMessage = error?.message
        row.record.target = completion.target
        row.batch = completion.batch
        row.finish = response?.finish
        if error?.code == RowError.invalidOutput { row.outputRetries += 1 }
        row.promptTokens = response?.promptTokens
        row.completionTokens = response?.completionTokens
        row.latencyMs = response?.latencyMs
    }

    public func release(owner: String, seqs: [Int64]?) async throws {
        storage.withLock { storage in
            let chosen = seqs.map(Set.init)
            for at in storage.rows.indices where storage.rows[at].isHeld(by: owner) && (chosen?.contains(storage.rows[at].seq) ?? true) {
                storage.rows[at].returnToPending()
            }
        }
    }

    @discardableResult
    public func reclaimExpired(now: Date) async throws -> Int {
        storage.withLock { storage in
            var count = 0
            for at in storage.rows.indices where storage.rows[at].isRunning && (storage.rows[at].leaseExpiresAt ?? .distantFuture) < now {
                storage.rows[at].returnToPending()
                count += 1
            }
            return count
        }
    }

    public func requeueFailed(_ filter: RequeueFilter) async throws -> Int {
        storage.withLock { storage in
            var count = 0
            for at in storage.rows.indices where storage.rows[at].state == .failed {
                let row = storage.rows[at]
                let any = filter.statusCodes.isEmpty && filter.errorCodes.isEmpty
                let matches =
                    any || row.record.statusCode.map(filter.statusCodes.contains) == true || row.record.errorCode.map(filter.errorCodes.contains) == true
                guard matches else { continue }
                storage.rows[at].state = .pending
                storage.rows[at].attempts = 0
                storage.rows[at].outputRetries = 0
                storage.rows[at].nextAttemptAt = .distantPast
                count += 1
            }
            return count
        }
    }

    public func activity() async throws -> (nextDue: Date?, running: Int) {
        storage.withLock { storage in
            let due = storage.rows.lazy.filter { $0.state == .pending }.map(\.nextAttemptAt).min()
            // As SQLite stores it: a row due at once is due at the epoch.
            return (due.map { max($0, Date(timeIntervalSince1970: 0)) }, storage.rows.count { $0.isRunning })
        }
    }

    public func leaseOwners() async throws -> [String] {
        storage.withLock { storage in
            Array(Set(storage.rows.compactMap { $0.isRunning ? $0.leaseOwner : nil })).sorted()
        }
    }

    public func counts() async throws -> (job: QueueCounts, variants: [QueueCounts]) {
        storage.withLock { storage in Self.counts(storage.rows) }
    }

    static func counts(_ rows: [Stored]) -> (job: QueueCounts, variants: [QueueCounts]) {
        var groups: [String: StateCount] = [:]
        for row in rows {
            let key = "\(row.state.rawValue)/\(row.row.variant)"
            var group = groups[key] ?? StateCount(variant: row.row.variant, state: row.state, rows: 0, promptTokens: 0, completionTokens: 0)
            group.rows += 1
            group.promptTokens = Bounded.add(group.promptTokens, row.promptTokens ?? 0)
            group.completionTokens = Bounded.add(group.completionTokens, row.completionTokens ?? 0)
            if row.finish == "length" { group.truncated += 1 }
            if row.finish == "content_filter" { group.filtered += 1 }
            if row.batch != nil {
                group.batchPromptTokens = Bounded.add(group.batchPromptTokens, row.promptTokens ?? 0)
                group.batchCompletionTokens = Bounded.add(group.batchCompletionTokens, row.completionTokens ?? 0)
            }
            groups[key] = group
        }
        return QueueCounts.tally(Array(groups.values))
    }

    public func tally() async throws -> QueueTally {
        storage.withLock { storage in
            struct Key: Hashable { var target: String?, status: Int? }
            var counts: [Key: Int] = [:]
            for row in storage.rows where row.state == .succeeded {
                counts[Key(target: row.record.target, status: row.record.statusCode), default: 0] += 1
            }
            for attempt in storage.attempts { counts[Key(target: attempt.target, status: attempt.status), default: 0] += 1 }
            let last = storage.rows.lazy.filter { $0.state == .succeeded }.compactMap(\.finishedAt).max()
            return QueueTally(answers: counts.map { .init(target: $0.key.target, status: $0.key.status, count: $0.value) }, lastSuccess: last)
        }
    }

    public func report() async throws -> QueueReport {
        storage.withLock { storage in
            let rows = storage.rows
            let (job, variants) = Self.counts(rows)
            let latencies = Self.latencies(rows)
            func figures(_ counts: QueueCounts, variant: String?) -> QueueReport.VariantFigures {
                let chosen = rows.filter { variant == nil || $0.row.variant == variant }
                let sample = variant.map { latencies.byVariant[$0] ?? [] } ?? latencies.job
                return QueueReport.VariantFigures(
                    counts: counts, latencyP50: LatencySample.percentile(sample, 0.5), latencyP95: LatencySample.percentile(sample, 0.95),
                    attempts: chosen.reduce(0) { $0 + $1.attempts }
                )
            }
            // As SQL picks them: the least id (as bytes), and that row's message (the least variant's).
            func precedes(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
            var errors: [String?: (figure: QueueReport.ErrorFigure, variant: String)] = [:]
            for row in rows where row.state == .failed {
                let code = row.record.errorCode
                let example = (id: row.row.id, variant: row.row.variant, message: row.record.errorMessage ?? "")
                guard var entry = errors[code] else {
                    errors[code] = (.init(code: code ?? "unknown", count: 1, exampleID: example.id, exampleMessage: example.message), example.variant)
                    continue
                }
                entry.figure.count += 1
                let current = entry.figure.exampleID
                if precedes(example.id, current) || (example.id == current && precedes(example.variant, entry.variant)) {
                    (entry.figure.exampleID, entry.figure.exampleMessage, entry.variant) = (example.id, example.message, example.variant)
                }
                errors[code] = entry
            }
            // Most frequent first; a tie in code order, a row without a code first (as SQL sorts NULL).
            let common = errors.sorted { a, b in
                if a.value.figure.count != b.value.figure.count { return a.value.figure.count > b.value.figure.count }
                switch (a.key, b.key) {
                case (nil, _): return b.key != nil
                case (_, nil): return false
                case (let x?, let y?): return x.utf8.lexicographicallyPrecedes(y.utf8)
                }
            }.prefix(5).map(\.value.figure)
            let open = rows.filter { $0.state == .pending || $0.state == .running }
            return QueueReport(
                job: figures(job, variant: nil), variants: variants.map { figures($0, variant: $0.variant) },
                throttled: storage.attempts.count { $0.status == 429 }, errors: Array(common),
                pendingPromptTokens: open.reduce(0) { Bounded.add($0, $1.row.estimatedPromptTokens) },
                pendingCompletionCap: open.reduce(0) { Bounded.add($0, $1.row.estimatedTokens - $1.row.estimatedPromptTokens) },
                pendingRows: open.count, targets: Self.targetFigures(storage, latencies: latencies), batches: storage.batches,
                onlineLatencyP50: LatencySample.percentile(latencies.online, 0.5)
            )
        }
    }

    /// As ``SQLiteQueue`` reads them: the succeeded rows' latencies, grouped and sorted.
    static func latencies(_ rows: [Stored]) -> LatencySample {
        var sample = LatencySample()
        for row in rows where row.state == .succeeded {
            if let latency = row.latencyMs { sample.add(latency, variant: row.row.variant, target: row.record.target, online: row.batch == nil) }
        }
        sample.sort()
        return sample
    }

    static func targetFigures(_ storage: Storage, latencies: LatencySample) -> [QueueReport.TargetFigures] {
        var figures: [String: QueueReport.TargetFigures] = [:]
        for row in storage.rows where row.state == .failed {
            guard let name = row.record.target else { continue }
            figures[name, default: .init(name: name)].failed += 1
        }
        for row in storage.rows where row.state == .succeeded {
            guard let name = row.record.target else { continue }
            var figure = figures[name] ?? .init(name: name)
            figure.requests += 1
            figure.succeeded += 1
            figure.promptTokens = Bounded.add(figure.promptTokens, row.promptTokens ?? 0)
            figure.completionTokens = Bounded.add(figure.completionTokens, row.completionTokens ?? 0)
            if row.batch != nil {
                figure.batchPromptTokens = Bounded.add(figure.batchPromptTokens, row.promptTokens ?? 0)
                figure.batchCompletionTokens = Bounded.add(figure.batchCompletionTokens, row.completionTokens ?? 0)
            }
            if row.finish == "length" { figure.truncated += 1 }
            if row.finish == "content_filter" { figure.filtered += 1 }
            figures[name] = figure
        }
        for attempt in storage.attempts {
            guard let name = attempt.target else { continue }
            var figure = figures[name] ?? .init(name: name)
            figure.requests += 1
            if attempt.status == 429 { figure.throttled += 1 }
            figures[name] = figure
        }
        for (name, parking) in storage.parkings { figures[name, default: .init(name: name)].parking = parking }
        for (name, sorted) in latencies.byTarget {
            figures[name]?.latencyP50 = LatencySample.percentile(sorted, 0.5)
            figures[name]?.latencyP95 = LatencySample.percentile(sorted, 0.95)
        }
        return figures.values.sorted { $0.name < $1.name }
    }

    public func park(target: String, until: Date?, reason: String, at: Date) async throws {
        storage.withLock { $0.parkings[target] = QueueReport.Parking(until: until, reason: reason, at: at) }
    }

    public func checkIn(owner: String, now: Date, staleBefore: Date) async throws -> Int {
        storage.withLock { storage in
            storage.runners[owner] = now
            storage.runners = storage.runners.filter { $0.value >= staleBefore }
            return storage.runners.count
        }
    }

    public func checkOut(owner: String) async throws {
        storage.withLock { _ = $0.runners.removeValue(forKey: owner) }
    }

    public func clearParkings() async throws {
        storage.withLock { $0.parkings = [:] }
    }

    public func forEachFinished(_ body: (ExportRow) throws -> Void) async throws {
        // A snapshot, as SQLite's read is: the lock is not held while `body` writes files.
        let rows = storage.withLock { $0.rows }
        for row in rows where row.state == .succeeded || row.state == .failed {
            try body(row.record.exportRow)
        }
    }
}

extension RowOutcome {
    /// The answer kept with the row, if the try had one.
    var response: ResponseRecord? {
        switch self {
        case .succeeded(let record): record
        case .retry(_, _, let record, _), .failed(_, let record): record
        }
    }

    /// The error kept as the row's last, nil on success.
    var error: RowError? {
        switch self {
        case .succeeded: nil
        case .retry(_, let error, _, _), .failed(let error, _): error
        }
    }

    /// Whether the try uses up one of the row's attempts (a 429 does not).
    var countsAsAttempt: Bool {
        if case .retry(_, _, _, let counts) = self { return counts }
        return true
    }
}
