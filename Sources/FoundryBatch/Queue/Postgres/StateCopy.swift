import Foundation
import GRDB
import PostgresNIO

/// What `state copy` moved.
public struct StateCopyReport: Sendable, Equatable {
    public var from: String
    public var to: String
    public var rows = 0
    public var attempts = 0
    public var loads = 0
    public var batches = 0

    public var text: String {
        "moved \(rows) rows (\(attempts) attempts, \(loads) loads, \(batches) batches) from \(from) to \(to); "
            + "set the job's state: to \(to) and run it: nothing already answered is sent again"
    }
}

extension PostgresQueue {
    /// The tables `state copy` moves, in an order their references allow, with their columns:
    /// the same in both stores. Runners and parkings belong to runs, not to the job, and stay.
    static let copiedTables: [(name: String, columns: [String])] = [
        ("loads", ["id", "source", "loaded_at", "rows"]),
        (
            "rows",
            [
                "seq", "id", "variant", "source", "load_id", "content_hash", "api", "deployment", "body", "metadata", "estimated_tokens",
                "estimated_prompt_tokens", "state", "attempts", "next_attempt_at", "lease_owner", "lease_expires_at", "status_code",
                "request_id", "client_request_id", "response", "error_code", "error_message", "prompt_tokens", "completion_tokens",
                "total_tokens", "latency_ms", "first_sent_at", "finished_at", "target", "batch", "output_retries", "finish",
            ]
        ),
        ("attempts", ["seq", "attempt", "at", "status_code", "error_code", "error_message", "request_id", "client_request_id", "target"]),
        (
            "batches",
            [
                "number", "target", "model", "api", "phase", "rows", "bytes", "tokens", "file_id", "batch_id", "status", "completed", "failed",
                "created_at", "submitted_at", "ends_by", "output_file_id", "error_file_id", "not_before", "refusals", "cancel_requested",
                "message", "owner", "owner_until",
            ]
        ),
    ]

    /// Copies every load, row, attempt and batch of `source` into this (empty) schema, in one
    /// transaction: the copy is whole or not at all.
    ///
    /// - Throws: ``StorageError`` when this schema already holds rows (copy into a new one).
    public func copy(from source: SQLiteQueue) async throws -> StateCopyReport {
        var report = StateCopyReport(from: source.path, to: location.display)
        let counts = try await storage(.long) { [self] connection in
            try await transaction(connection) { connection in
                let present = try await value(Int.self, connection, "SELECT count(*) FROM §rows") ?? 0
                guard present == 0 else {
                    throw StorageError(
                        path: location.display, message: "this schema already holds \(present) rows; copy into a new schema (?schema=...)"
                    )
                }
                var counts: [String: Int] = [:]
                for table in Self.copiedTables {
                    counts[table.name] = try await copy(table: table.name, columns: table.columns, from: source, into: connection)
                }
                // New rows, loads and batches number on from the copied ones.
                for (table, column) in [("rows", "seq"), ("loads", "id"), ("batches", "number")] {
                    try await run(
                        connection,
                        "SELECT setval(pg_get_serial_sequence('\(prefix)\(table)', '\(column)'), coalesce((SELECT max(\(column)) FROM §\(table)), 0) + 1, false)"
                    )
                }
                return counts
            }
        }
        (report.loads, report.rows, report.attempts, report.batches) = (counts["loads"] ?? 0, counts["rows"] ?? 0, counts["attempts"] ?? 0, counts["batches"] ?? 0)
        return report
    }

    /// Copies one table in pages of rows, never the whole table in memory.
    func copy(table: String, columns: [String], from source: SQLiteQueue, into connection: PostgresConnection) async throws -> Int {
        let page = max(1, 20_000 / columns.count)
        let key = columns[0]
        var after: Int64 = .min
        var copied = 0
        while true {
            let rows = try source.pool.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT \(columns.joined(separator: ", ")) FROM \(table) WHERE \(key) > ? ORDER BY \(key) LIMIT \(page)", arguments: [after]
                )
            }
            guard let last = rows.last else { return copied }
            // `attempts` has no unique key: its pages go by seq and hold whole seqs.
            var chunk = rows
            if table == "attempts", rows.count == page {
                let lastSeq: Int64 = last[key]
                chunk = rows.filter { ($0[key] as Int64) < lastSeq }
                if chunk.isEmpty {
                    chunk = try source.pool.read { db in
                        try Row.fetchAll(db, sql: "SELECT \(columns.joined(separator: ", ")) FROM attempts WHERE seq = ?", arguments: [lastSeq])
                    }
                }
            }
            var values: [Value] = []
            var tuples: [String] = []
            for row in chunk {
                let base = values.count
                tuples.append("(" + (1...columns.count).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
                for (index, column) in columns.enumerated() {
                    values.append(Self.value(row[index] as DatabaseValue, boolean: column == "cancel_requested"))
                }
            }
            try await run(
                connection, "INSERT INTO §\(table)(\(columns.joined(separator: ", "))) VALUES \(tuples.joined(separator: ", ")) RETURNING 1", values
            )
            copied += chunk.count
            after = chunk.last.map { $0[key] as Int64 } ?? after
        }
    }

    /// A SQLite value as a bound value (SQLite's 0/1 as a boolean where the column is one).
    static func value(_ value: DatabaseValue, boolean: Bool) -> Value {
        switch value.storage {
        case .null: return .null
        case .int64(let number): return boolean ? .bool(number != 0) : .int(Int(number))
        case .double(let number): return .double(number)
        case .string(let text): return .text(text)
        case .blob(let data): return .text(String(decoding: data, as: UTF8.self))
        }
    }
}
