import CSQLiteTuning
import Foundation
import GRDB
import GRDBSQLite

/// The SQLite implementation of ``RowQueue``: one database file per job, in WAL mode.
///
/// Several processes may open the same file: writes wait up to ``busyTimeout`` for the
/// write lock instead of failing, and rows are handed out under leases, so two `run`
/// processes on one job share the work.
///
/// ```swift
/// let queue = try SQLiteQueue(path: paths.state, jobName: job.name)
/// let rows = try await queue.claim(owner: "w1", limit: 32, leaseUntil: .now + 60, now: .now)
/// ```
public final class SQLiteQueue: RowQueue {
    /// How long a write waits for another process's transaction before giving up.
    public static let busyTimeout: TimeInterval = 60

    let pool: DatabasePool
    public let path: String

    /// Set once, before the process's first database: SQLite's memory statistics take a
    /// global mutex on every allocation, a tenth of a million-row load's time.
    static let tuned: Void = { _ = foundry_batch_sqlite_disable_memory_statistics() }()

    /// Opens (creating if needed) the state database of `jobName` at `path`.
    ///
    /// - Throws: ``StorageError`` when the file cannot be opened, is not a foundry-batch
    ///   database, or belongs to another job.
    public init(path: String, jobName: String) throws(StorageError) {
        self.path = path
        _ = Self.tuned
        try FilePaths.ensureParent(of: path)
        var configuration = Configuration()
        configuration.busyMode = .timeout(Self.busyTimeout)
        configuration.label = "foundry-batch"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            pool = try Self.open(path: path, configuration: configuration)
            try pool.write { db in
                try db.execute(sql: "INSERT OR IGNORE INTO job(key, value) VALUES ('name', ?)", arguments: [jobName])
                let stored = try String.fetchOne(db, sql: "SELECT value FROM job WHERE key = 'name'")
                if stored != jobName {
                    throw StorageError(
                        path: path,
                        message: "this state database belongs to job '\(stored ?? "?")', not '\(jobName)'; give this job its own state: path"
                    )
                }
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(path: path, message: "cannot open the state database: \(Self.describe(error))")
        }
    }

    /// Opens the pool and applies the migrations, safe against another process doing the
    /// same at the same moment.
    ///
    /// Two runs that open a new state file together (overlapping cron runs of a `{date}`
    /// job) both see it unmigrated, and the second to commit fails; or one finds the file
    /// locked while the other switches it to WAL. The loser waits a little and finds the
    /// work done by the other.
    static func open(path: String, configuration: Configuration) throws -> DatabasePool {
        let attempts = 100
        for attempt in 1...attempts {
            do {
                let pool = try DatabasePool(path: path, configuration: configuration)
                do {
                    try migrator.migrate(pool)
                } catch {
                    guard (try? pool.read({ try migrator.hasCompletedMigrations($0) })) == true else { throw error }
                }
                return pool
            } catch {
                if attempt == attempts { throw error }
                usleep(50_000)
            }
        }
        throw StorageError(path: path, message: "cannot open the state database")
    }

    /// Closes the database's connections; the session that opened the queue calls it last.
    public func close() {
        try? pool.close()
    }

    static func describe(_ error: any Error) -> String {
        if let dbError = error as? DatabaseError {
            return dbError.message ?? "SQLite error \(dbError.resultCode)"
        }
        return "\(error)"
    }

    /// The one mapping of database failures: a ``StorageError`` naming the file. Errors of
    /// the caller's own (an exporter's write, an input error in a load) pass unchanged.
    ///
    /// A row that does not decode (a value this version does not know, written by another
    /// version or by hand) is a storage failure too, never a raw `DecodingError`.
    func storage<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DatabaseError {
            throw StorageError(path: path, message: "state database error: \(Self.describe(error))")
        } catch let error where error is RowDecodingError || error is DecodingError {
            throw StorageError(
                path: path, message: "the state database holds a row this version cannot read (written by another version, or edited by hand)"
            )
        }
    }

    // MARK: Loading

    public func withLoad<T: Sendable>(source: String, _ body: (LoadTransaction) throws -> T) async throws -> T {
        try await storage {
            // Synchronous on purpose: the body inserts row by row inside GRDB's transaction.
            try pool.write { db in
                try db.execute(sql: "INSERT INTO loads(source, loaded_at, rows) VALUES (?, ?, 0)", arguments: [source, Date().timeIntervalSince1970])
                let loader = try SQLiteLoader(db: db, loadID: db.lastInsertedRowID, source: source)
                let result = try body(LoadTransaction(insert: loader.add))
                try db.execute(sql: "UPDATE loads SET rows = ? WHERE id = ?", arguments: [loader.inserted, loader.loadID])
                return result
            }
        }
    }

    // MARK: Working

    public func claim(owner: String, limit: Int, leaseUntil: Date, now: Date) async throws -> [ClaimedRow] {
        try await storage {
            try await pool.write { db in
                try ClaimedRow.fetchAll(
                    db,
                    sql: """
                        UPDATE rows SET state = 'running', lease_owner = ?, lease_expires_at = ?,
                            first_sent_at = coalesce(first_sent_at, ?)
                        WHERE seq IN (
                            SELECT seq FROM rows WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY seq LIMIT ?)
                        RETURNING seq, id, variant, api, deployment, body, attempts, estimated_tokens AS estimatedTokens, target AS lastTarget,
                            output_retries AS outputRetries
                        """,
                    arguments: [owner, leaseUntil.timeIntervalSince1970, now.timeIntervalSince1970, now.timeIntervalSince1970, limit]
                ).sorted { $0.seq < $1.seq }
            }
        }
    }

    public func extendLeases(owner: String, until: Date) async throws {
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: "UPDATE rows SET lease_expires_at = ? WHERE lease_owner = ? AND state = 'running'",
                    arguments: [until.timeIntervalSince1970, owner]
                )
            }
        }
    }

    @discardableResult
    public func complete(_ completions: [Completion], now: Date) async throws -> Int {
        guard !completions.isEmpty else { return 0 }
        return try await storage {
            try await pool.write { db in
                var applied = 0
                for completion in completions {
                    if try Self.apply(completion, db: db, now: now) { applied += 1 }
                }
                return applied
            }
        }
    }

    static func apply(_ completion: Completion, db: Database, now: Date) throws -> Bool {
        let stamp = now.timeIntervalSince1970
        let change = CompletionChange(completion)
        let (state, countsAsAttempt, nextAttempt) = (change.state, change.countsAsAttempt, change.nextAttempt)
        let (response, error) = (change.response, change.error)
        let statement = try db.cachedStatement(
            sql: """
                UPDATE rows SET state = ?, attempts = attempts + ?, next_attempt_at = ?,
                    lease_owner = NULL, lease_expires_at = NULL,
                    status_code = ?, request_id = ?, client_request_id = ?, response = ?,
                    prompt_tokens = ?, completion_tokens = ?, total_tokens = ?, latency_ms = ?,
                    error_code = ?, error_message = ?, finished_at = ?, target = ?, batch = ?,
                    output_retries = output_retries + ?, finish = ?
                WHERE seq = ? AND lease_owner = ? AND state = 'running'
                """
        )
        let clientRequestID = response?.clientRequestID ?? completion.clientRequestID
        try statement.execute(arguments: [
            state.rawValue, countsAsAttempt ? 1 : 0, nextAttempt,
            response?.statusCode ?? error?.statusCode, response?.requestID, clientRequestID, response?.body,
            response?.promptTokens, response?.completionTokens, response?.totalTokens, response?.latencyMs,
            error?.code, error?.message, state == .pending ? nil : stamp, completion.target, completion.batch,
            error?.code == RowError.invalidOutput ? 1 : 0, response?.finish,
            completion.seq, completion.owner,
        ])
        guard db.changesCount > 0 else { return false }
        if let error {
            let history = try db.cachedStatement(
                sql: """
                    INSERT INTO attempts(seq, attempt, at, status_code, error_code, error_message, request_id, client_request_id, target)
                    SELECT seq, attempts, ?, ?, ?, ?, ?, ?, ? FROM rows WHERE seq = ?
                    """
            )
            try history.execute(arguments: [
                stamp, response?.statusCode ?? error.statusCode, error.code, error.message, response?.requestID,
                clientRequestID, completion.target, completion.seq,
            ])
        }
        return true
    }

    public func release(owner: String, seqs: [Int64]?) async throws {
        try await storage {
            try await pool.write { db in
                let reset = "UPDATE rows SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ? AND state = 'running'"
                if let seqs {
                    let statement = try db.cachedStatement(sql: reset + " AND seq = ?")
                    for seq in seqs { try statement.execute(arguments: [owner, seq]) }
                } else {
                    try db.execute(sql: reset, arguments: [owner])
                }
            }
        }
    }

    @discardableResult
    public func reclaimExpired(now: Date) async throws -> Int {
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        UPDATE rows SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL
                        WHERE state = 'running' AND lease_expires_at < ?
                        """,
                    arguments: [now.timeIntervalSince1970]
                )
                return db.changesCount
            }
        }
    }

    public func requeueFailed(_ filter: RequeueFilter) async throws -> Int {
        try await storage {
            try await pool.write { db in
                var conditions: [String] = []
                var arguments = StatementArguments()
                if !filter.statusCodes.isEmpty {
                    conditions.append("status_code IN (\(filter.statusCodes.map { _ in "?" }.joined(separator: ",")))")
                    arguments += StatementArguments(filter.statusCodes)
                }
                if !filter.errorCodes.isEmpty {
                    conditions.append("error_code IN (\(filter.errorCodes.map { _ in "?" }.joined(separator: ",")))")
                    arguments += StatementArguments(filter.errorCodes)
                }
                let match = conditions.isEmpty ? "" : " AND (" + conditions.joined(separator: " OR ") + ")"
                try db.execute(
                    sql: """
                        UPDATE rows SET state = 'pending', attempts = 0, output_retries = 0, next_attempt_at = 0, finished_at = NULL
                        WHERE state = 'failed'\(match)
                        """,
                    arguments: arguments
                )
                return db.changesCount
            }
        }
    }

    public func activity() async throws -> (nextDue: Date?, running: Int) {
        try await storage {
            try await pool.read { db in
                let due = try Double.fetchOne(db, sql: "SELECT min(next_attempt_at) FROM rows WHERE state = 'pending'")
                let running = try Int.fetchOne(db, sql: "SELECT count(*) FROM rows WHERE state = 'running'") ?? 0
                return (due.map { Date(timeIntervalSince1970: $0) }, running)
            }
        }
    }

    public func leaseOwners() async throws -> [String] {
        try await storage {
            try await pool.read { db in
                try String.fetchAll(db, sql: "SELECT DISTINCT lease_owner FROM rows WHERE state = 'running' AND lease_owner IS NOT NULL")
            }
        }
    }

    public func counts() async throws -> (job: QueueCounts, variants: [QueueCounts]) {
        try await storage { try await pool.read { db in QueueCounts.tally(try Self.stateCounts(db)) } }
    }

    /// Rows, tokens and attempts by variant and state: one pass over the rows.
    static func stateCounts(_ db: Database) throws -> [StateCount] {
        try StateCount.fetchAll(
            db,
            sql: """
                SELECT variant, state, count(*) AS rows, coalesce(sum(prompt_tokens), 0) AS promptTokens,
                    coalesce(sum(completion_tokens), 0) AS completionTokens,
                    coalesce(sum(CASE WHEN batch IS NOT NULL THEN prompt_tokens END), 0) AS batchPromptTokens,
                    coalesce(sum(CASE WHEN batch IS NOT NULL THEN completion_tokens END), 0) AS batchCompletionTokens,
                    coalesce(sum(finish = 'length'), 0) AS truncated, coalesce(sum(finish = 'content_filter'), 0) AS filtered,
                    coalesce(sum(attempts), 0) AS attempts
                FROM rows GROUP BY variant, state
                """
        )
    }

    public func report() async throws -> QueueReport {
        try await storage { try await pool.read { db in try Self.report(db, latencies: try Self.latencies(db)) } }
    }

    /// `status`'s figures, from one read: a handful of passes over the rows, whatever the
    /// number of variants.
    static func report(_ db: Database, latencies: LatencySample) throws -> QueueReport {
        let (job, variants) = QueueReport.figures(try stateCounts(db), latencies: latencies)
        let errors = try QueueReport.ErrorFigure.fetchAll(
            db,
            sql: """
                SELECT code, count, exampleID, coalesce((
                        SELECT error_message FROM rows r WHERE r.state = 'failed' AND r.id = e.exampleID AND r.error_code IS e.error_code
                        ORDER BY r.variant LIMIT 1), '') AS exampleMessage
                FROM (SELECT error_code, coalesce(error_code, 'unknown') AS code, count(*) AS count, min(id) AS exampleID
                    FROM rows WHERE state = 'failed' GROUP BY error_code ORDER BY count DESC, error_code LIMIT 5) AS e
                ORDER BY count DESC, error_code
                """
        )
        let throttled = try Int.fetchOne(db, sql: "SELECT count(*) FROM attempts WHERE status_code = 429") ?? 0
        let pending = try PendingFigures.fetchOne(
            db,
            sql: """
                SELECT count(*) AS rows, coalesce(sum(estimated_prompt_tokens), 0) AS promptTokens,
                    coalesce(sum(estimated_tokens - estimated_prompt_tokens), 0) AS completionCap
                FROM rows WHERE state IN ('pending', 'running')
                """
        ) ?? PendingFigures()
        return QueueReport(
            job: job, variants: variants,
            throttled: throttled, errors: errors, pendingPromptTokens: pending.promptTokens,
            pendingCompletionCap: pending.completionCap, pendingRows: pending.rows, targets: try targetFigures(db, latencies: latencies),
            batches: try batches(db), onlineLatencyP50: LatencySample.percentile(latencies.online, 0.5)
        )
    }

    /// Every succeeded row's latency, in one pass, grouped and sorted.
    static func latencies(_ db: Database) throws -> LatencySample {
        var sample = LatencySample()
        let rows = try Row.fetchCursor(
            db,
            sql: """
                SELECT latency_ms, CAST(variant AS TEXT), CAST(target AS TEXT), batch IS NULL FROM rows
                WHERE state = 'succeeded' AND typeof(latency_ms) IN ('real', 'integer')
                """
        )
        while let row = try rows.next() {
            sample.add(row[0], variant: row[1], target: row[2], online: row[3])
        }
        sample.sort()
        return sample
    }

    public func tally() async throws -> QueueTally {
        try await storage {
            try await pool.read { db in
                let answers = try QueueTally.Answers.fetchAll(
                    db,
                    sql: """
                        SELECT target, status_code AS status, count(*) AS count FROM (
                            SELECT target, status_code FROM rows WHERE state = 'succeeded'
                            UNION ALL SELECT target, status_code FROM attempts)
                        GROUP BY target, status_code
                        """
                )
                let last = try Double.fetchOne(db, sql: "SELECT max(finished_at) FROM rows WHERE state = 'succeeded'")
                return QueueTally(answers: answers, lastSuccess: last.map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    static func targetFigures(_ db: Database, latencies: LatencySample) throws -> [QueueReport.TargetFigures] {
        var figures: [String: QueueReport.TargetFigures] = [:]
        func entry(_ name: String) -> QueueReport.TargetFigures { figures[name] ?? .init(name: name) }
        for row in try TargetRow.fetchAll(
            db,
            sql: """
                SELECT target, count(*) AS rows, coalesce(sum(prompt_tokens), 0) AS promptTokens,
                    coalesce(sum(completion_tokens), 0) AS completionTokens,
                    coalesce(sum(finish = 'length'), 0) AS truncated, coalesce(sum(finish = 'content_filter'), 0) AS filtered,
                    coalesce(sum(CASE WHEN batch IS NOT NULL THEN prompt_tokens END), 0) AS batchPromptTokens,
                    coalesce(sum(CASE WHEN batch IS NOT NULL THEN completion_tokens END), 0) AS batchCompletionTokens
                FROM rows WHERE state = 'succeeded' AND target IS NOT NULL GROUP BY target
                """
        ) {
            var figure = entry(row.target)
            (figure.requests, figure.succeeded, figure.promptTokens, figure.completionTokens) = (row.rows, row.rows, row.promptTokens, row.completionTokens)
            (figure.truncated, figure.filtered) = (row.truncated, row.filtered)
            (figure.batchPromptTokens, figure.batchCompletionTokens) = (row.batchPromptTokens, row.batchCompletionTokens)
            let sample = latencies.byTarget[row.target]
            (figure.latencyP50, figure.latencyP95) = (LatencySample.percentile(sample, 0.5), LatencySample.percentile(sample, 0.95))
            figures[row.target] = figure
        }
        for row in try Row.fetchAll(db, sql: "SELECT target, count(*) FROM rows WHERE state = 'failed' AND target IS NOT NULL GROUP BY target") {
            let name: String = row[0]
            figures[name, default: entry(name)].failed = row[1]
        }
        for row in try Row.fetchAll(
            db, sql: "SELECT target, count(*), coalesce(sum(status_code = 429), 0) FROM attempts WHERE target IS NOT NULL GROUP BY target"
        ) {
            let name: String = row[0]
            var figure = entry(name)
            figure.requests += row[1] as Int
            figure.throttled = row[2] as Int
            figures[name] = figure
        }
        for parking in try ParkingRow.fetchAll(db, sql: "SELECT target, until, reason, at FROM parkings") {
            var figure = entry(parking.target)
            figure.parking = QueueReport.Parking(
                until: parking.until.map { Date(timeIntervalSince1970: $0) }, reason: parking.reason, at: Date(timeIntervalSince1970: parking.at)
            )
            figures[parking.target] = figure
        }
        return figures.values.sorted { $0.name < $1.name }
    }

    public func park(target: String, until: Date?, reason: String, at: Date) async throws {
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: "INSERT OR REPLACE INTO parkings(target, until, reason, at) VALUES (?, ?, ?, ?)",
                    arguments: [target, until?.timeIntervalSince1970, reason, at.timeIntervalSince1970]
                )
            }
        }
    }

    public func checkIn(owner: String, now: Date, staleBefore: Date) async throws -> Int {
        try await storage {
            try await pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO runners(owner, seen) VALUES (?, ?)", arguments: [owner, now.timeIntervalSince1970])
                try db.execute(sql: "DELETE FROM runners WHERE seen < ?", arguments: [staleBefore.timeIntervalSince1970])
                return try Int.fetchOne(db, sql: "SELECT count(*) FROM runners") ?? 1
            }
        }
    }

    public func checkOut(owner: String) async throws {
        try await storage { try await pool.write { db in try db.execute(sql: "DELETE FROM runners WHERE owner = ?", arguments: [owner]) } }
    }

    public func clearParkings() async throws {
        try await storage { try await pool.write { db in try db.execute(sql: "DELETE FROM parkings") } }
    }

    public func forEachFinished(_ body: (ExportRow) throws -> Void) async throws {
        try await storage {
            // Synchronous on purpose: one read, streamed through a cursor into `body`.
            try pool.read { db in
                let cursor = try RowRecord.fetchCursor(
                    db,
                    sql: """
                        SELECT seq, id, variant, state, attempts, metadata, status_code AS statusCode, request_id AS requestID,
                            client_request_id AS clientRequestID, response, error_code AS errorCode, error_message AS errorMessage, target
                        FROM rows WHERE state IN ('succeeded', 'failed') ORDER BY seq
                        """
                )
                while let row = try cursor.next() { try body(row.exportRow) }
            }
        }
    }
}

/// Inserts rows of one load through prepared statements inside the load's transaction.
///
/// A class: the ``LoadTransaction`` closure and the queue share its count of inserted rows.
///
/// A row from the load's own file keeps only its line number in `rows.source` (a row's
/// source is always `file:line`, so digits alone cannot be anything else), and its file is
/// its load's (`loads.source`): a sixth of a row's bytes saved.
final class SQLiteLoader {
    let db: Database
    let loadID: Int64
    var inserted = 0
    /// `<file>:`, the prefix of the sources this load stores as a line number.
    let prefix: String
    let insert: Statement
    let lookup: Statement

    init(db: Database, loadID: Int64, source: String) throws {
        self.db = db
        self.loadID = loadID
        prefix = source + ":"
        insert = try db.cachedStatement(
            sql: """
                INSERT INTO rows(id, variant, source, load_id, content_hash, api, deployment, body, metadata, estimated_tokens,
                    estimated_prompt_tokens)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id, variant) DO NOTHING
                """
        )
        lookup = try db.cachedStatement(sql: """
            SELECT r.load_id AS loadID, r.content_hash AS contentHash,
                CASE WHEN r.source NOT GLOB '*[^0-9]*' AND r.source <> '' THEN l.source || ':' || r.source ELSE r.source END AS source
            FROM rows r LEFT JOIN loads l ON l.id = r.load_id WHERE r.id = ? AND r.variant = ?
            """)
    }

    func add(_ row: NewRow) throws -> LoadDisposition {
        var source = row.source
        if source.hasPrefix(prefix) {
            let line = source.utf8.dropFirst(prefix.utf8.count)
            if !line.isEmpty, line.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { source = String(decoding: line, as: UTF8.self) }
        }
        // A million-line load spends a tenth of its time boxing GRDB arguments: bind through
        // SQLite's C API instead. The statement is used nowhere else, inside GRDB's transaction.
        let handle = insert.sqliteStatement
        sqlite3_reset(handle)
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        // Bound from the strings' own UTF-8, with its length: no C string is made per value.
        func bind(_ text: String, at index: Int32) throws {
            var text = text
            let code = text.withUTF8 { bytes in
                guard let base = bytes.baseAddress else { return sqlite3_bind_text(handle, index, "", 0, transient) }
                return sqlite3_bind_text(handle, index, UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self), Int32(bytes.count), transient)
            }
            guard code == SQLITE_OK else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
            }
        }
        try bind(row.id, at: 1)
        try bind(row.variant, at: 2)
        try bind(source, at: 3)
        sqlite3_bind_int64(handle, 4, loadID)
        try bind(row.contentHash, at: 5)
        try bind(row.api.rawValue, at: 6)
        try bind(row.deployment, at: 7)
        try bind(row.body, at: 8)
        if let metadata = row.metadata {
            try bind(metadata, at: 9)
        } else {
            sqlite3_bind_null(handle, 9)
        }
        sqlite3_bind_int64(handle, 10, Int64(row.estimatedTokens))
        sqlite3_bind_int64(handle, 11, Int64(row.estimatedPromptTokens))
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
        if db.changesCount > 0 {
            inserted += 1
            return .inserted
        }
        guard let existing = try QueuedRow.fetchOne(lookup, arguments: [row.id, row.variant]) else { return .unchanged }
        return existing.disposition(of: row, loadID: loadID)
    }
}
