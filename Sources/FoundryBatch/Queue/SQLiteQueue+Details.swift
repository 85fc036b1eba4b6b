import Foundation
import GRDB

extension SQLiteQueue {
    public func details(bins: Int, comparisons: Int, textLimit: Int) async throws -> ReportDetails {
        try await storage {
            try await pool.read { db in
                let latencies = try Self.latencies(db)
                var details = ReportDetails(report: try Self.report(db, latencies: latencies))
                try Self.throughput(db, bins: bins, into: &details)
                details.chartLatency(of: latencies, bins: max(bins / 2, 1))
                details.comparisons = try Self.comparisons(db, limit: comparisons, textLimit: textLimit)
                return details
            }
        }
    }

    static func throughput(_ db: Database, bins: Int, into details: inout ReportDetails) throws {
        let ended = "FROM rows WHERE state IN ('succeeded', 'failed') AND typeof(finished_at) IN ('real', 'integer')"
        guard let span = try Row.fetchOne(db, sql: "SELECT min(finished_at), max(finished_at) \(ended)"),
            let first = span[0] as Double?, let last = span[1] as Double?
        else { return }
        let (start, end) = (Date(timeIntervalSince1970: first), Date(timeIntervalSince1970: last))
        let (width, count) = ReportDetails.timeBins(first: start, last: end, count: bins)
        (details.firstFinished, details.lastFinished, details.binSeconds) = (start, end, width)
        details.throughput = (0..<count).map { ReportDetails.TimeBin(start: start + Double($0) * width) }
        for row in try Row.fetchAll(
            db,
            sql: """
                SELECT min(CAST((finished_at - ?) / ? AS INTEGER), ?) AS bin, sum(state = 'succeeded'), sum(state = 'failed')
                \(ended) GROUP BY bin
                """,
            arguments: [first, width, count - 1]
        ) {
            let bin: Int = row[0]
            (details.throughput[bin].succeeded, details.throughput[bin].failed) = (row[1], row[2])
        }
    }

    /// A JSON text value at `path` of `json`, NULL when it is absent or not a string.
    static func textSQL(_ json: String, _ path: String) -> String {
        "CASE json_type(\(json), '\(path)') WHEN 'text' THEN json_extract(\(json), '\(path)') END"
    }

    /// What the report shows for a row, in SQL: ``AnswerText/shown(body:api:)`` for a
    /// succeeded row, `error: <code>` for a failed one, NULL for one not done.
    static var answerSQL: String {
        // Only arrays are walked and only objects read, as AnswerText does: json_each and
        // json_extract on a string element (`"output": ["hi"]`) would fail the whole query.
        func part(_ type: String, _ key: String) -> String {
            """
            (SELECT json_extract(c.value, '$.\(key)')
             FROM json_each(CASE json_type(response, '$.output') WHEN 'array' THEN json_extract(response, '$.output') ELSE '[]' END) AS o,
                json_each(coalesce(CASE WHEN o.type = 'object' THEN CASE json_type(o.value, '$.content') WHEN 'array' THEN json_extract(o.value, '$.content') END END, '[]')) AS c
             WHERE CASE WHEN c.type = 'object' THEN json_extract(c.value, '$.type') = '\(type)' AND json_type(c.value, '$.\(key)') = 'text' END
             LIMIT 1)
            """
        }
        return """
            CASE WHEN state = 'failed' THEN 'error: ' || coalesce(error_code, 'unknown')
                WHEN state <> 'succeeded' OR response IS NULL THEN NULL
                WHEN NOT json_valid(response) THEN response
                WHEN api = 'responses' THEN coalesce(\(part("output_text", "text")), 'refused: ' || \(part("refusal", "refusal")), response)
                ELSE coalesce(\(textSQL("response", "$.choices[0].message.content")),
                    'refused: ' || \(textSQL("response", "$.choices[0].message.refusal")), response)
            END
            """
    }

    /// The last user message of a row's request, in SQL: ``AnswerText/prompt(ofRequest:)``.
    static var promptSQL: String {
        """
        CASE WHEN json_valid(body) THEN coalesce(\(textSQL("body", "$.messages[#-1].content")), \(textSQL("body", "$.input")),
            \(textSQL("body", "$.input[#-1].content"))) END
        """
    }

    /// `expression` as text a page can show: a NUL (which would end the text as it is read)
    /// as U+FFFD, and bytes that are not UTF-8 read as text all the same.
    static func shownText(_ expression: String) -> String {
        "replace(CAST(\(expression) AS TEXT), char(0), char(65533))"
    }

    static func comparisons(_ db: Database, limit: Int, textLimit: Int) throws -> [ReportDetails.Comparison] {
        guard limit > 0, try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT DISTINCT variant FROM rows LIMIT 2)") ?? 0 > 1 else { return [] }
        let chosen = try Row.fetchAll(
            db,
            sql: """
                WITH answers AS (SELECT id, seq, variant, \(answerSQL) AS answer FROM rows)
                SELECT id, min(seq), count(DISTINCT answer) > 1 AS disagree FROM answers
                GROUP BY id HAVING count(DISTINCT variant) > 1 ORDER BY disagree DESC, min(seq) LIMIT ?
                """,
            arguments: [limit]
        )
        var comparisons: [String: ReportDetails.Comparison] = [:]
        for row in chosen {
            let id: String = row[0]
            comparisons[id] = .init(id: id, seq: row[1], disagree: row[2], answers: [])
        }
        guard !comparisons.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: comparisons.count).joined(separator: ", ")
        for row in try Row.fetchAll(
            db,
            sql: """
                SELECT CAST(id AS TEXT), CAST(variant AS TEXT), CAST(state AS TEXT), \(Self.shownText("substr(\(answerSQL), 1, ?)")),
                    CASE WHEN typeof(latency_ms) IN ('real', 'integer') THEN latency_ms END,
                    CASE WHEN typeof(completion_tokens) = 'integer' THEN completion_tokens END, CAST(finish AS TEXT),
                    \(Self.shownText("substr(\(promptSQL), 1, ?)"))
                FROM rows WHERE id IN (\(marks)) ORDER BY id, seq
                """,
            arguments: StatementArguments([textLimit + 1, textLimit + 1] + comparisons.keys.map { $0 as any DatabaseValueConvertible })
        ) {
            let id: String = row[0]
            let state = RowState(rawValue: row[2]) ?? .pending
            comparisons[id]?.answers.append(
                .init(
                    variant: row[1], state: state, text: (row[3] as String?).map { ReportDetails.cut($0, textLimit) },
                    latencyMs: row[4], completionTokens: row[5], finish: row[6]
                )
            )
            if comparisons[id]?.prompt == nil { comparisons[id]?.prompt = (row[7] as String?).map { ReportDetails.cut($0, textLimit) } }
        }
        return ReportDetails.ordered(Array(comparisons.values), limit: limit)
    }
}
