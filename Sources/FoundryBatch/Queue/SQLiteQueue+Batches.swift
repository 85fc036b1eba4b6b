import Foundation
import GRDB

extension BatchRecord: FetchableRecord {}
extension PendingGroup: FetchableRecord {}
extension BatchLine: FetchableRecord {}

extension SQLiteQueue {
    /// A lease that does not expire: a batch's rows are its own until it is collected.
    /// (Seconds since 1970, beyond any `lease_expires_at < now` a reclaim compares with.)
    static let batchLease: Double = 1e12

    static let batchColumns = """
        number, target, model, api, phase, rows, bytes, tokens, file_id AS fileID, batch_id AS batchID, status, completed, failed,
        created_at AS createdAt, submitted_at AS submittedAt, ends_by AS endsBy, output_file_id AS outputFileID,
        error_file_id AS errorFileID, not_before AS notBefore, refusals, cancel_requested AS cancelRequested, message,
        owner, owner_until AS ownerUntil
        """

    static func batches(_ db: Database) throws -> [BatchRecord] {
        try BatchRecord.fetchAll(db, sql: "SELECT \(batchColumns) FROM batches ORDER BY number")
    }

    public func pendingGroups(now: Date) async throws -> [PendingGroup] {
        try await storage {
            try await pool.read { db in
                try PendingGroup.fetchAll(
                    db,
                    sql: """
                        SELECT deployment AS model, api, count(*) AS rows, coalesce(sum(length(CAST(body AS BLOB))), 0) AS bytes
                        FROM rows WHERE state = 'pending' AND next_attempt_at <= ? GROUP BY deployment, api ORDER BY min(seq)
                        """,
                    arguments: [now.timeIntervalSince1970]
                )
            }
        }
    }

    public func cutBatch(_ cut: BatchCut, now: Date) async throws -> BatchRecord? {
        try await storage {
            try await pool.write { db in
                let stamp = now.timeIntervalSince1970
                // The running sum of line bytes in input order: the rows that fit the file.
                let chosen = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT seq, bytes, tokens FROM (
                            SELECT seq, row_number() OVER (ORDER BY seq) AS n,
                                sum(length(CAST(body AS BLOB)) + ?) OVER (ORDER BY seq) AS bytes,
                                sum(estimated_tokens) OVER (ORDER BY seq) AS tokens
                            FROM rows WHERE state = 'pending' AND next_attempt_at <= ? AND deployment = ? AND api = ?
                            ORDER BY seq LIMIT ?)
                        WHERE (n = 1 OR bytes <= ?) AND tokens <= ?
                        """,
                    arguments: [cut.lineOverhead, stamp, cut.model, cut.api.rawValue, cut.maxRows, cut.maxBytes, cut.maxTokens]
                )
                guard let last = chosen.last else { return nil }
                let bytes: Int = last["bytes"]
                let tokens: Int = last["tokens"]
                try db.execute(
                    sql: "INSERT INTO batches(target, model, api, phase, rows, bytes, tokens, created_at) VALUES (?, ?, ?, 'cut', ?, ?, ?, ?)",
                    arguments: [cut.target, cut.model, cut.api.rawValue, chosen.count, bytes, tokens, stamp]
                )
                let number = db.lastInsertedRowID
                let bind = try db.cachedStatement(
                    sql: """
                        UPDATE rows SET state = 'running', lease_owner = ?, lease_expires_at = ?, first_sent_at = coalesce(first_sent_at, ?)
                        WHERE seq = ? AND state = 'pending'
                        """
                )
                for row in chosen {
                    let seq: Int64 = row["seq"]
                    try bind.execute(arguments: [BatchRecord.owner(number), Self.batchLease, stamp, seq])
                }
                return BatchRecord(
                    number: number, target: cut.target, model: cut.model, api: cut.api, rows: chosen.count, bytes: bytes, tokens: tokens,
                    createdAt: now
                )
            }
        }
    }

    public func updateBatch(_ batch: BatchRecord) async throws {
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        UPDATE batches SET phase = ?, file_id = ?, batch_id = ?, status = ?, completed = ?, failed = ?, submitted_at = ?,
                            ends_by = ?, output_file_id = ?, error_file_id = ?, not_before = ?, refusals = ?,
                            cancel_requested = (cancel_requested OR ?), message = ?
                        WHERE number = ?
                        """,
                    arguments: [
                        batch.phase.rawValue, batch.fileID, batch.batchID, batch.status, batch.completed, batch.failed,
                        batch.submittedAt?.timeIntervalSince1970, batch.endsBy?.timeIntervalSince1970, batch.outputFileID,
                        batch.errorFileID, batch.notBefore?.timeIntervalSince1970, batch.refusals, batch.cancelRequested, batch.message,
                        batch.number,
                    ]
                )
            }
        }
    }

    public func batches() async throws -> [BatchRecord] {
        try await storage { try await pool.read { db in try Self.batches(db) } }
    }

    public func claimBatch(_ number: Int64, owner: String, until: Date, now: Date, replacing: String?) async throws -> Bool {
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        UPDATE batches SET owner = ?, owner_until = ?
                        WHERE number = ? AND (owner IS NULL OR owner = ? OR owner_until < ? OR owner = ?)
                        """,
                    arguments: [owner, until.timeIntervalSince1970, number, owner, now.timeIntervalSince1970, replacing]
                )
                return db.changesCount > 0
            }
        }
    }

    public func requestCancel(_ number: Int64) async throws {
        try await storage {
            try await pool.write { db in try db.execute(sql: "UPDATE batches SET cancel_requested = 1 WHERE number = ?", arguments: [number]) }
        }
    }

    public func renewBatchClaims(owner: String, until: Date?) async throws {
        try await storage {
            try await pool.write { db in
                if let until {
                    try db.execute(sql: "UPDATE batches SET owner_until = ? WHERE owner = ?", arguments: [until.timeIntervalSince1970, owner])
                } else {
                    try db.execute(sql: "UPDATE batches SET owner = NULL, owner_until = NULL WHERE owner = ?", arguments: [owner])
                }
            }
        }
    }

    public func forEachBatchLine(number: Int64, _ body: (BatchLine) throws -> Void) async throws {
        try await storage {
            // Synchronous on purpose: one read, streamed through a cursor into `body`.
            try pool.read { db in
                let cursor = try BatchLine.fetchCursor(
                    db,
                    sql: "SELECT seq, id, api, deployment, body, attempts, output_retries AS outputRetries FROM rows WHERE state = 'running' AND lease_owner = ? ORDER BY seq",
                    arguments: [BatchRecord.owner(number)]
                )
                while let line = try cursor.next() { try body(line) }
            }
        }
    }
}
