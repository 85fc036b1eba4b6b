import Foundation
import PostgresNIO

extension PostgresQueue {
    func batches(_ connection: PostgresConnection) async throws -> [BatchRecord] {
        try await fetch(BatchRecord.self, connection, "SELECT \(SQLiteQueue.batchColumns) FROM §batches ORDER BY number")
    }

    public func pendingGroups(now: Date) async throws -> [PendingGroup] {
        try await storage { [self] connection in
            try await fetch(
                PendingGroup.self, connection,
                """
                SELECT deployment AS model, api, count(*) AS rows, coalesce(sum(octet_length(body)), 0)::bigint AS bytes
                FROM §rows WHERE state = 'pending' AND next_attempt_at <= $1 GROUP BY deployment, api ORDER BY min(seq)
                """,
                [.double(now.timeIntervalSince1970)]
            )
        }
    }

    public func cutBatch(_ cut: BatchCut, now: Date) async throws -> BatchRecord? {
        // As a claim: a cut whose answer a lost connection took may have committed, and its
        // rows would then sit in a batch this runner does not know of. Its retry finds that
        // batch by the cut's id first.
        let cutID = UUID().uuidString, retry = Retry()
        return try await storage { [self] connection in
            if retry.again() {
                let earlier = try await fetch(
                    BatchRecord.self, connection, "SELECT \(SQLiteQueue.batchColumns) FROM §batches WHERE cut_id = $1", [.text(cutID)]
                )
                if let earlier = earlier.first { return earlier }
            }
            return try await transaction(connection) { connection in
                let stamp = now.timeIntervalSince1970
                // The running sum of line bytes in input order: the rows that fit the file. Locked,
                // so that two runners cutting at once never put a row in two batches.
                let chosen = try await query(connection, 
                        """
                        SELECT seq, bytes, tokens FROM (
                            SELECT seq, row_number() OVER (ORDER BY seq) AS n,
                                (sum(octet_length(body) + $1) OVER (ORDER BY seq))::bigint AS bytes,
                                (sum(estimated_tokens) OVER (ORDER BY seq))::bigint AS tokens
                            FROM (SELECT seq, body, estimated_tokens FROM §rows
                                WHERE state = 'pending' AND next_attempt_at <= $2 AND deployment = $3 AND api = $4
                                ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED) AS locked) AS running
                        WHERE (n = 1 OR bytes <= $6) AND tokens <= $7 ORDER BY seq
                        """,
                        [
                            .int(cut.lineOverhead), .double(stamp), .text(cut.model), .text(cut.api.rawValue), .int(cut.maxRows),
                            .int(cut.maxBytes), .int(cut.maxTokens),
                        ]
                    )
                var seqs: [Int] = [], bytes = 0, tokens = 0
                for try await (seq, total, sum) in chosen.decode((Int, Int, Int).self) {
                    seqs.append(seq)
                    (bytes, tokens) = (total, sum)
                }
                guard !seqs.isEmpty else { return nil }
                let number = Int64(
                    try await value(
                        Int.self, connection,
                        """
                        INSERT INTO §batches(target, model, api, phase, rows, bytes, tokens, created_at, cut_id)
                        VALUES ($1, $2, $3, 'cut', $4, $5, $6, $7, $8) RETURNING number
                        """,
                        [
                            .text(cut.target), .text(cut.model), .text(cut.api.rawValue), .int(seqs.count), .int(bytes), .int(tokens), .double(stamp),
                            .text(cutID),
                        ]
                    ) ?? 0
                )
                try await run(
                    connection,
                    """
                    UPDATE §rows SET state = 'running', lease_owner = $1, lease_expires_at = $2, first_sent_at = coalesce(first_sent_at, $3)
                    WHERE seq = ANY($4) AND state = 'pending' RETURNING seq
                    """,
                    [.text(BatchRecord.owner(number)), .double(SQLiteQueue.batchLease), .double(stamp), .ints(seqs)]
                )
                return BatchRecord(
                    number: number, target: cut.target, model: cut.model, api: cut.api, rows: seqs.count, bytes: bytes, tokens: tokens, createdAt: now
                )
            }
        }
    }

    public func updateBatch(_ batch: BatchRecord) async throws {
        try await storage { [self] connection in
            try await run(
                connection,
                """
                UPDATE §batches SET phase = $1, file_id = $2, batch_id = $3, status = $4, completed = $5, failed = $6, submitted_at = $7,
                    ends_by = $8, output_file_id = $9, error_file_id = $10, not_before = $11, refusals = $12,
                    cancel_requested = (cancel_requested OR $13), message = $14
                WHERE number = $15 RETURNING number
                """,
                [
                    .text(batch.phase.rawValue), .text(batch.fileID), .text(batch.batchID), .text(batch.status), .int(batch.completed),
                    .int(batch.failed), .double(batch.submittedAt?.timeIntervalSince1970), .double(batch.endsBy?.timeIntervalSince1970),
                    .text(batch.outputFileID), .text(batch.errorFileID), .double(batch.notBefore?.timeIntervalSince1970), .int(batch.refusals),
                    .bool(batch.cancelRequested), .text(batch.message), .int(Int(batch.number)),
                ]
            )
        }
    }

    public func batches() async throws -> [BatchRecord] {
        try await storage { [self] connection in try await batches(connection) }
    }

    public func claimBatch(_ number: Int64, owner: String, until: Date, now: Date, replacing: String?) async throws -> Bool {
        try await storage { [self] connection in
            try await run(
                connection,
                """
                UPDATE §batches SET owner = $1, owner_until = $2
                WHERE number = $3 AND (owner IS NULL OR owner = $1 OR owner_until < $4 OR owner = $5) RETURNING number
                """,
                [.text(owner), .double(until.timeIntervalSince1970), .int(Int(number)), .double(now.timeIntervalSince1970), .text(replacing)]
            ) > 0
        }
    }

    public func requestCancel(_ number: Int64) async throws {
        try await storage { [self] connection in
            try await run(connection, "UPDATE §batches SET cancel_requested = true WHERE number = $1 RETURNING number", [.int(Int(number))])
        }
    }

    public func renewBatchClaims(owner: String, until: Date?) async throws {
        try await storage { [self] connection in
            if let until {
                try await run(
                    connection, "UPDATE §batches SET owner_until = $1 WHERE owner = $2 RETURNING number", [.double(until.timeIntervalSince1970), .text(owner)]
                )
            } else {
                try await run(connection, "UPDATE §batches SET owner = NULL, owner_until = NULL WHERE owner = $1 RETURNING number", [.text(owner)])
            }
        }
    }

    public func forEachBatchLine(number: Int64, _ body: (BatchLine) throws -> Void) async throws {
        try await BlockingBridge.withBody(body) { body in
            let cursor = Cursor()
            try await storage(.long, progress: cursor) { [self] connection in
                try await streamed(
                    connection,
                    """
                    SELECT seq, id, api, deployment, body, attempts, output_retries AS outputRetries FROM §rows
                    WHERE state = 'running' AND lease_owner = $1 AND seq > $2 ORDER BY seq
                    """,
                    [.text(BatchRecord.owner(number)), .int(cursor.seq)]
                ) { row in
                    let line = try BatchLine(from: PostgresRowDecoder(row))
                    try body.value(line)
                    cursor.passed(line.seq)
                }
            }
        }
    }
}
