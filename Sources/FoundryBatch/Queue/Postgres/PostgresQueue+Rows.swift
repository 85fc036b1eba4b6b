import Foundation
import PostgresNIO
import Synchronization

extension PostgresQueue {
    // MARK: Loading

    /// Rows a load hands over at once: one round trip looks them up, one inserts them.
    static let loadChunk = 500

    public func withLoad<T: Sendable>(source: String, _ body: (LoadTransaction) throws -> T) async throws -> T {
        // A load cut off by a lost connection rolls back whole, and `body` runs again from
        // its first line (the protocol says it may): loading again is safe.
        let loaded = try await BlockingBridge.withBody(body) { body in
            try await storage(.long) { [self] connection in
                try await transaction(connection) { connection in
                    // One load at a time per job: the rows of a file get consecutive seqs, in input order.
                    try await run(connection, "SELECT pg_advisory_xact_lock(hashtext($1))", [.text("foundry-batch load " + location.schema)])
                    let loadID = try await value(
                        Int.self, connection, "INSERT INTO §loads(source, loaded_at, rows) VALUES ($1, $2, 0) RETURNING id",
                        [.text(source), .double(Date().timeIntervalSince1970)]
                    ) ?? 0
                    let loader = PostgresLoader(queue: self, connection: connection, loadID: loadID, source: source)
                    let result = try await BlockingBridge.onThread {
                        try body.value(LoadTransaction(chunk: Self.loadChunk) { rows in try BlockingBridge.wait { try await loader.add(rows) } })
                    }
                    try await run(
                        connection, "UPDATE §loads SET rows = $1 WHERE id = $2 RETURNING id", [.int(await loader.inserted), .int(loadID)]
                    )
                    return (result: result, inserted: await loader.inserted)
                }
            }
        }
        if loaded.inserted > 0 { await refreshStatistics() }
        return loaded.result
    }

    /// Has the server sample the rows again after many changed state at once (a load, a
    /// requeue): with statistics from before, the planner thinks few rows are pending and
    /// each claim reads and sorts every pending row (10 ms at 10k rows, growing with the
    /// job) instead of walking the pending index for its first rows (under 1 ms).
    /// Best effort: a failure only leaves the plan to autovacuum's next analyze.
    func refreshStatistics() async {
        _ = try? await storage { [self] connection in try await run(connection, "ANALYZE §rows") }
    }

    // MARK: Working

    public func claim(owner: String, limit: Int, leaseUntil: Date, now: Date) async throws -> [ClaimedRow] {
        // A claim whose answer a lost connection took may have committed. Its retry first
        // takes back the rows it leased, found by the claim's id: else they would stay
        // leased to this runner, which lives on and keeps extending its leases.
        let claimID = UUID().uuidString, retry = Retry()
        let returning = """
            seq, id, variant, api, deployment, body, attempts, estimated_tokens AS estimatedTokens, target AS lastTarget,
                output_retries AS outputRetries
            """
        return try await storage { [self] connection in
            if retry.again() {
                let earlier = try await fetch(
                    ClaimedRow.self, connection,
                    "SELECT \(returning) FROM §rows WHERE claim_id = $1 AND lease_owner = $2 AND state = 'running'",
                    [.text(claimID), .text(owner)]
                )
                if !earlier.isEmpty { return earlier.sorted { $0.seq < $1.seq } }
            }
            return try await fetch(
                ClaimedRow.self, connection,
                """
                UPDATE §rows SET state = 'running', lease_owner = $1, lease_expires_at = $2, first_sent_at = coalesce(first_sent_at, $3),
                    claim_id = $5
                WHERE seq IN (
                    SELECT seq FROM §rows WHERE state = 'pending' AND next_attempt_at <= $3 ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
                RETURNING \(returning)
                """,
                [.text(owner), .double(leaseUntil.timeIntervalSince1970), .double(now.timeIntervalSince1970), .int(limit), .text(claimID)]
            ).sorted { $0.seq < $1.seq }
        }
    }

    /// Whether a step runs again: the first call answers false, every later one true.
    final class Retry: Sendable {
        private let ran = Mutex(false)
        func again() -> Bool { ran.withLock { ran in defer { ran = true }; return ran } }
    }

    public func extendLeases(owner: String, until: Date) async throws {
        try await storage { [self] connection in
            try await run(
                connection, "UPDATE §rows SET lease_expires_at = $1 WHERE lease_owner = $2 AND state = 'running' RETURNING seq",
                [.double(until.timeIntervalSince1970), .text(owner)]
            )
        }
    }

    @discardableResult
    public func complete(_ completions: [Completion], now: Date) async throws -> Int {
        guard !completions.isEmpty else { return 0 }
        // One statement per group, not one per row: a group commit of 64 rows made 64 round
        // trips, and the queue did about 1,000 rows a second. The seqs of a document must be
        // unique (the history would get a line per copy); a group holds one owner's rows, so
        // a second completion of a seq could only be stale: the first is kept.
        var seen = Set<Int64>()
        let documents = try Self.documents(completions.filter { seen.insert($0.seq).inserted }.map { CompletedRow($0, now: now) })
        return try await storage { [self] connection in
            if documents.count == 1 { return try await completeStatement(connection, documents[0], now: now) }
            // A group too large for one jsonb value (answers of many megabytes) still ends whole.
            return try await transaction(connection) { connection in
                var applied = 0
                for document in documents { applied += try await completeStatement(connection, document, now: now) }
                return applied
            }
        }
    }

    /// A jsonb value holds at most 256 MiB; a document stays well under it.
    static let documentBytes = 32 << 20

    /// The rows as JSON arrays of at most `limit` bytes each (a single larger row alone).
    static func documents(_ rows: [CompletedRow], limit: Int = documentBytes) throws -> [String] {
        let encoder = JSONEncoder()
        var documents: [String] = [], current: [UInt8] = [UInt8(ascii: "[")]
        for row in rows {
            let encoded = try encoder.encode(row)
            if current.count > 1, current.count + encoded.count + 2 > limit {
                current.append(UInt8(ascii: "]"))
                documents.append(String(decoding: current, as: UTF8.self))
                current = [UInt8(ascii: "[")]
            }
            if current.count > 1 { current.append(UInt8(ascii: ",")) }
            current.append(contentsOf: encoded)
        }
        current.append(UInt8(ascii: "]"))
        documents.append(String(decoding: current, as: UTF8.self))
        return documents
    }

    /// Ends or reschedules the rows of one document whose owner still holds them, with
    /// their attempt history; returns how many it changed.
    func completeStatement(_ connection: PostgresConnection, _ document: String, now: Date) async throws -> Int {
        try await run(
            connection,
            """
            WITH v AS (
                SELECT * FROM jsonb_to_recordset($1::jsonb) AS v(
                    seq bigint, owner text, state text, attempt integer, next_attempt_at double precision, status_code integer,
                    request_id text, client_request_id text, response text, prompt_tokens bigint, completion_tokens bigint,
                    total_tokens bigint, latency_ms double precision, error_code text, error_message text, finished_at double precision,
                    target text, batch bigint, output_retry integer, finish text)
            ), done AS (
                UPDATE §rows r SET state = v.state, attempts = r.attempts + v.attempt, next_attempt_at = v.next_attempt_at,
                    lease_owner = NULL, lease_expires_at = NULL, status_code = v.status_code, request_id = v.request_id,
                    client_request_id = v.client_request_id, response = v.response, prompt_tokens = v.prompt_tokens,
                    completion_tokens = v.completion_tokens, total_tokens = v.total_tokens, latency_ms = v.latency_ms,
                    error_code = v.error_code, error_message = v.error_message, finished_at = v.finished_at, target = v.target,
                    batch = v.batch, output_retries = r.output_retries + v.output_retry, finish = v.finish
                FROM v WHERE r.seq = v.seq AND r.lease_owner = v.owner AND r.state = 'running'
                RETURNING r.seq, r.attempts
            ), history AS (
                INSERT INTO §attempts(seq, attempt, at, status_code, error_code, error_message, request_id, client_request_id, target)
                SELECT done.seq, done.attempts, $2, v.status_code, v.error_code, v.error_message, v.request_id, v.client_request_id, v.target
                FROM done JOIN v ON v.seq = done.seq WHERE v.error_code IS NOT NULL
                RETURNING seq
            )
            SELECT seq FROM done
            """,
            [.text(document), .double(now.timeIntervalSince1970)]
        )
    }

    /// One completion as a row of the JSON document ``complete(_:now:)`` sends (a missing key is NULL).
    struct CompletedRow: Encodable {
        var seq: Int64, owner: String, state: String, attempt: Int, nextAttemptAt: Double
        var statusCode: Int?, requestID: String?, clientRequestID: String?, response: String?
        var promptTokens: Int?, completionTokens: Int?, totalTokens: Int?, latencyMs: Double?
        var errorCode: String?, errorMessage: String?, finishedAt: Double?, target: String?, batch: Int64?
        var outputRetry: Int, finish: String?

        enum CodingKeys: String, CodingKey {
            case seq, owner, state, attempt, nextAttemptAt = "next_attempt_at", statusCode = "status_code", requestID = "request_id"
            case clientRequestID = "client_request_id", response, promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
            case totalTokens = "total_tokens", latencyMs = "latency_ms", errorCode = "error_code", errorMessage = "error_message"
            case finishedAt = "finished_at", target, batch, outputRetry = "output_retry", finish
        }

        init(_ completion: Completion, now: Date) {
            let change = CompletionChange(completion)
            let response = change.response, error = change.error
            seq = completion.seq
            owner = completion.owner
            state = change.state.rawValue
            attempt = change.countsAsAttempt ? 1 : 0
            nextAttemptAt = change.nextAttempt
            statusCode = response?.statusCode ?? error?.statusCode
            requestID = Self.storable(response?.requestID)
            clientRequestID = Self.storable(response?.clientRequestID ?? completion.clientRequestID)
            self.response = Self.storable(response?.body)
            promptTokens = response?.promptTokens
            completionTokens = response?.completionTokens
            totalTokens = response?.totalTokens
            latencyMs = (response?.latencyMs).flatMap { $0.isFinite ? $0 : nil }
            errorCode = error?.code
            errorMessage = Self.storable(error?.message)
            finishedAt = change.state == .pending ? nil : now.timeIntervalSince1970
            target = completion.target
            batch = completion.batch
            outputRetry = error?.code == RowError.invalidOutput ? 1 : 0
            finish = Self.storable(response?.finish)
        }

        /// `text` as PostgreSQL can hold it: it refuses U+0000 anywhere in a value, and one
        /// such answer would fail its whole group.
        static func storable(_ text: String?) -> String? {
            guard let text, text.utf8.contains(0) else { return text }
            var scalars = String.UnicodeScalarView()
            for scalar in text.unicodeScalars { scalars.append(scalar.value == 0 ? "\u{FFFD}" : scalar) }
            return String(scalars)
        }
    }

    public func release(owner: String, seqs: [Int64]?) async throws {
        try await storage { [self] connection in
            let reset = "UPDATE §rows SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1 AND state = 'running'"
            if let seqs {
                try await run(connection, reset + " AND seq = ANY($2) RETURNING seq", [.text(owner), .ints(seqs.map(Int.init))])
            } else {
                try await run(connection, reset + " RETURNING seq", [.text(owner)])
            }
        }
    }

    @discardableResult
    public func reclaimExpired(now: Date) async throws -> Int {
        try await storage { [self] connection in
            try await run(
                connection,
                """
                UPDATE §rows SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL
                WHERE state = 'running' AND lease_expires_at < $1 RETURNING seq
                """,
                [.double(now.timeIntervalSince1970)]
            )
        }
    }

    public func requeueFailed(_ filter: RequeueFilter) async throws -> Int {
        let requeued = try await storage { [self] connection in
            var conditions: [String] = []
            var values: [Value] = []
            if !filter.statusCodes.isEmpty {
                values.append(.ints(filter.statusCodes))
                conditions.append("status_code = ANY($\(values.count))")
            }
            if !filter.errorCodes.isEmpty {
                values.append(.texts(filter.errorCodes))
                conditions.append("error_code = ANY($\(values.count))")
            }
            let match = conditions.isEmpty ? "" : " AND (" + conditions.joined(separator: " OR ") + ")"
            return try await run(
                connection,
                """
                UPDATE §rows SET state = 'pending', attempts = 0, output_retries = 0, next_attempt_at = 0, finished_at = NULL
                WHERE state = 'failed'\(match) RETURNING seq
                """,
                values
            )
        }
        if requeued > 0 { await refreshStatistics() }
        return requeued
    }

    public func activity() async throws -> (nextDue: Date?, running: Int) {
        try await storage { [self] connection in
            let due = try await value(Double.self, connection, "SELECT min(next_attempt_at) FROM §rows WHERE state = 'pending'")
            let running = try await value(Int.self, connection, "SELECT count(*) FROM §rows WHERE state = 'running'") ?? 0
            return (due.map { Date(timeIntervalSince1970: $0) }, running)
        }
    }

    public func leaseOwners() async throws -> [String] {
        try await storage { [self] connection in
            try await fetch(String.self, connection, "SELECT DISTINCT lease_owner FROM §rows WHERE state = 'running' AND lease_owner IS NOT NULL")
        }
    }

    // MARK: Figures

    /// Rows, tokens and attempts by variant and state: one pass over the rows.
    static let stateCountsSQL = """
        SELECT variant, state, count(*) AS rows, coalesce(sum(prompt_tokens), 0)::bigint AS promptTokens,
            coalesce(sum(completion_tokens), 0)::bigint AS completionTokens,
            coalesce(sum(prompt_tokens) FILTER (WHERE batch IS NOT NULL), 0)::bigint AS batchPromptTokens,
            coalesce(sum(completion_tokens) FILTER (WHERE batch IS NOT NULL), 0)::bigint AS batchCompletionTokens,
            count(*) FILTER (WHERE finish = 'length') AS truncated, count(*) FILTER (WHERE finish = 'content_filter') AS filtered,
            coalesce(sum(attempts), 0)::bigint AS attempts
        FROM §rows GROUP BY variant, state
        """

    public func counts() async throws -> (job: QueueCounts, variants: [QueueCounts]) {
        try await storage { [self] connection in QueueCounts.tally(try await fetch(StateCount.self, connection, Self.stateCountsSQL)) }
    }

    public func report() async throws -> QueueReport {
        try await storage { [self] connection in
            try await transaction(connection) { connection in
                try await report(connection, latencies: try await latencies(connection))
            }
        }
    }

    /// Every succeeded row's latency, in one pass, grouped and sorted.
    func latencies(_ connection: PostgresConnection) async throws -> LatencySample {
        var sample = LatencySample()
        let rows = try await query(connection, "SELECT latency_ms, variant, target, batch IS NULL FROM §rows WHERE state = 'succeeded' AND latency_ms IS NOT NULL", [])
        for try await (latency, variant, target, online) in rows.decode((Double, String, String?, Bool).self) {
            sample.add(latency, variant: variant, target: target, online: online)
        }
        sample.sort()
        return sample
    }

    /// `status`'s figures: the same queries as ``SQLiteQueue``'s, in PostgreSQL's words
    /// (byte order for text, `NULLS FIRST` as SQLite sorts).
    func report(_ connection: PostgresConnection, latencies: LatencySample) async throws -> QueueReport {
        let (job, variants) = QueueReport.figures(try await fetch(StateCount.self, connection, Self.stateCountsSQL), latencies: latencies)
        let errors = try await fetch(
            QueueReport.ErrorFigure.self, connection,
            """
            SELECT code, count, exampleID, coalesce((
                    SELECT error_message FROM §rows r WHERE r.state = 'failed' AND r.id = e.exampleID AND r.error_code IS NOT DISTINCT FROM e.error_code
                    ORDER BY r.variant COLLATE "C" LIMIT 1), '') AS exampleMessage
            FROM (SELECT error_code, coalesce(error_code, 'unknown') AS code, count(*) AS count, min(id COLLATE "C") AS exampleID
                FROM §rows WHERE state = 'failed' GROUP BY error_code ORDER BY count(*) DESC, error_code COLLATE "C" NULLS FIRST LIMIT 5) AS e
            ORDER BY count DESC, error_code COLLATE "C" NULLS FIRST
            """
        )
        let throttled = try await value(Int.self, connection, "SELECT count(*) FROM §attempts WHERE status_code = 429") ?? 0
        let pending =
            try await fetch(
                PendingFigures.self, connection,
                """
                SELECT count(*) AS rows, coalesce(sum(estimated_prompt_tokens), 0)::bigint AS promptTokens,
                    coalesce(sum(estimated_tokens - estimated_prompt_tokens), 0)::bigint AS completionCap
                FROM §rows WHERE state IN ('pending', 'running')
                """
            ).first ?? PendingFigures()
        return QueueReport(
            job: job, variants: variants,
            throttled: throttled, errors: errors, pendingPromptTokens: pending.promptTokens,
            pendingCompletionCap: pending.completionCap, pendingRows: pending.rows,
            targets: try await targetFigures(connection, latencies: latencies), batches: try await batches(connection),
            onlineLatencyP50: LatencySample.percentile(latencies.online, 0.5)
        )
    }

    func targetFigures(_ connection: PostgresConnection, latencies: LatencySample) async throws -> [QueueReport.TargetFigures] {
        var figures: [String: QueueReport.TargetFigures] = [:]
        func entry(_ name: String) -> QueueReport.TargetFigures { figures[name] ?? .init(name: name) }
        for row in try await fetch(
            TargetRow.self, connection,
            """
            SELECT target, count(*) AS rows, coalesce(sum(prompt_tokens), 0)::bigint AS promptTokens,
                coalesce(sum(completion_tokens), 0)::bigint AS completionTokens,
                count(*) FILTER (WHERE finish = 'length') AS truncated, count(*) FILTER (WHERE finish = 'content_filter') AS filtered,
                coalesce(sum(prompt_tokens) FILTER (WHERE batch IS NOT NULL), 0)::bigint AS batchPromptTokens,
                coalesce(sum(completion_tokens) FILTER (WHERE batch IS NOT NULL), 0)::bigint AS batchCompletionTokens
            FROM §rows WHERE state = 'succeeded' AND target IS NOT NULL GROUP BY target
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
        let failed = try await query(connection, "SELECT target, count(*) FROM §rows WHERE state = 'failed' AND target IS NOT NULL GROUP BY target", [])
        for try await (name, count) in failed.decode((String, Int).self) { figures[name, default: entry(name)].failed = count }
        let tries = try await query(connection, 
                "SELECT target, count(*), count(*) FILTER (WHERE status_code = 429) FROM §attempts WHERE target IS NOT NULL GROUP BY target", []
            )
        for try await (name, count, throttled) in tries.decode((String, Int, Int).self) {
            var figure = entry(name)
            figure.requests += count
            figure.throttled = throttled
            figures[name] = figure
        }
        for parking in try await fetch(ParkingRow.self, connection, "SELECT target, until, reason, at FROM §parkings") {
            var figure = entry(parking.target)
            figure.parking = QueueReport.Parking(
                until: parking.until.map { Date(timeIntervalSince1970: $0) }, reason: parking.reason, at: Date(timeIntervalSince1970: parking.at)
            )
            figures[parking.target] = figure
        }
        return figures.values.sorted { $0.name < $1.name }
    }

    public func tally() async throws -> QueueTally {
        try await storage { [self] connection in
            let answers = try await fetch(
                QueueTally.Answers.self, connection,
                """
                SELECT target, status_code AS status, count(*) AS count FROM (
                    SELECT target, status_code FROM §rows WHERE state = 'succeeded'
                    UNION ALL SELECT target, status_code FROM §attempts) AS answered
                GROUP BY target, status_code
                """
            )
            let last = try await value(Double.self, connection, "SELECT max(finished_at) FROM §rows WHERE state = 'succeeded'")
            return QueueTally(answers: answers, lastSuccess: last.map(Date.init(timeIntervalSince1970:)))
        }
    }

    // MARK: Runners and targets

    public func park(target: String, until: Date?, reason: String, at: Date) async throws {
        try await storage { [self] connection in
            try await run(
                connection,
                """
                INSERT INTO §parkings(target, until, reason, at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (target) DO UPDATE SET until = excluded.until, reason = excluded.reason, at = excluded.at RETURNING target
                """,
                [.text(target), .double(until?.timeIntervalSince1970), .text(reason), .double(at.timeIntervalSince1970)]
            )
        }
    }

    public func clearParkings() async throws {
        try await storage { [self] connection in try await run(connection, "DELETE FROM §parkings RETURNING target") }
    }

    public func checkIn(owner: String, now: Date, staleBefore: Date) async throws -> Int {
        try await storage { [self] connection in
            try await transaction(connection) { connection in
                try await run(
                    connection,
                    "INSERT INTO §runners(owner, seen) VALUES ($1, $2) ON CONFLICT (owner) DO UPDATE SET seen = excluded.seen RETURNING owner",
                    [.text(owner), .double(now.timeIntervalSince1970)]
                )
                try await run(connection, "DELETE FROM §runners WHERE seen < $1 RETURNING owner", [.double(staleBefore.timeIntervalSince1970)])
                return try await value(Int.self, connection, "SELECT count(*) FROM §runners") ?? 1
            }
        }
    }

    public func checkOut(owner: String) async throws {
        try await storage { [self] connection in try await run(connection, "DELETE FROM §runners WHERE owner = $1 RETURNING owner", [.text(owner)]) }
    }

    // MARK: Export

    public func forEachFinished(_ body: (ExportRow) throws -> Void) async throws {
        // Streamed: the server sends rows as they are read, never the whole job at once.
        // A lost connection starts again after the last row `body` took, so a row is
        // handed over once.
        try await BlockingBridge.withBody(body) { body in
            let cursor = Cursor()
            try await storage(.long, progress: cursor) { [self] connection in
                try await streamed(
                    connection,
                    """
                    SELECT seq, id, variant, state, attempts, metadata, status_code AS statusCode, request_id AS requestID,
                        client_request_id AS clientRequestID, response, error_code AS errorCode, error_message AS errorMessage, target
                    FROM §rows WHERE state IN ('succeeded', 'failed') AND seq > $1 ORDER BY seq
                    """, [.int(cursor.seq)]
                ) { row in
                    let exported = try RowRecord(from: PostgresRowDecoder(row)).exportRow
                    try body.value(exported)
                    cursor.passed(exported.seq)
                }
            }
        }
    }

    /// The `seq` of the last row a streaming step handed over, where it starts again.
    final class Cursor: Sendable {
        private let state = Mutex(0)
        var seq: Int { state.withLock { $0 } }
        func passed(_ seq: Int64) { state.withLock { $0 = Int(seq) } }
    }
}

/// What a completion writes into its row, worked out once for both queues.
struct CompletionChange {
    var state: RowState
    var countsAsAttempt = true
    var nextAttempt: Double = 0
    var response: ResponseRecord?
    var error: RowError?

    init(_ completion: Completion) {
        switch completion.outcome {
        case .succeeded(let record):
            state = .succeeded
            response = record
        case .retry(let at, let rowError, let record, let counts):
            state = .pending
            countsAsAttempt = counts
            nextAttempt = at.timeIntervalSince1970
            response = record
            error = rowError
        case .failed(let rowError, let record):
            state = .failed
            response = record
            error = rowError
        }
    }
}
