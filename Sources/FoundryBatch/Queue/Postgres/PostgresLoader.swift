import Foundation
import PostgresNIO

/// Adds a load's rows inside its transaction, a chunk at a time: one round trip finds the
/// chunk's ids already queued (by this load or an earlier one), one inserts the new rows.
///
/// As ``SQLiteLoader`` does, a row from the load's own file keeps only its line number in
/// `rows.source`, its file being its load's.
actor PostgresLoader {
    let queue: PostgresQueue
    let connection: PostgresConnection
    let loadID: Int
    let prefix: String
    private(set) var inserted = 0

    init(queue: PostgresQueue, connection: PostgresConnection, loadID: Int, source: String) {
        self.queue = queue
        self.connection = connection
        self.loadID = loadID
        prefix = source + ":"
    }

    struct Key: Hashable {
        var id: String
        var variant: String
    }

    func add(_ rows: [NewRow]) async throws -> [LoadDisposition] {
        var known: [Key: QueuedRow] = [:]
        for row in try await queue.fetch(
            QueuedRowWithKey.self, connection,
            """
            SELECT r.id, r.variant, r.load_id AS loadID, r.content_hash AS contentHash,
                CASE WHEN r.source ~ '^[0-9]+$' THEN l.source || ':' || r.source ELSE r.source END AS source
            FROM unnest($1::text[], $2::text[]) AS k(id, variant)
            JOIN §rows r ON r.id = k.id AND r.variant = k.variant LEFT JOIN §loads l ON l.id = r.load_id
            """,
            [.texts(rows.map(\.id)), .texts(rows.map(\.variant))]
        ) {
            known[Key(id: row.id, variant: row.variant)] = QueuedRow(loadID: Int64(row.loadID), contentHash: row.contentHash, source: row.source)
        }
        var dispositions: [LoadDisposition] = []
        var fresh: [NewRow] = []
        for row in rows {
            let key = Key(id: row.id, variant: row.variant)
            if let queued = known[key] {
                dispositions.append(queued.disposition(of: row, loadID: Int64(loadID)))
            } else {
                dispositions.append(.inserted)
                known[key] = QueuedRow(loadID: Int64(loadID), contentHash: row.contentHash, source: row.source)
                fresh.append(row)
            }
        }
        guard !fresh.isEmpty else { return dispositions }
        var values: [PostgresQueue.Value] = []
        var tuples: [String] = []
        for row in fresh {
            var source = row.source
            if source.hasPrefix(prefix) {
                let line = source.dropFirst(prefix.count)
                if !line.isEmpty, line.allSatisfy({ $0.isASCII && $0.isNumber }) { source = String(line) }
            }
            let base = values.count
            tuples.append("(" + (1...11).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
            values += [
                .text(row.id), .text(row.variant), .text(source), .int(loadID), .text(row.contentHash), .text(row.api.rawValue),
                .text(row.deployment), .text(row.body), .text(row.metadata), .int(row.estimatedTokens), .int(row.estimatedPromptTokens),
            ]
        }
        let added = try await queue.run(
            connection,
            """
            INSERT INTO §rows(id, variant, source, load_id, content_hash, api, deployment, body, metadata, estimated_tokens, estimated_prompt_tokens)
            VALUES \(tuples.joined(separator: ", ")) RETURNING seq
            """,
            values
        )
        inserted += added
        return dispositions
    }
}

/// A queued row with its key, as the chunk lookup returns it.
struct QueuedRowWithKey: Decodable {
    var id: String
    var variant: String
    var loadID: Int
    var contentHash: String
    var source: String
}
