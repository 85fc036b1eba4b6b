import Foundation
import PostgresNIO

extension PostgresQueue {
    public func details(bins: Int, comparisons: Int, textLimit: Int) async throws -> ReportDetails {
        try await storage(.long) { [self] connection in
            // One snapshot for the figures, the charts and the answers.
            try await transaction(connection) { connection in
                try await run(connection, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                let latencies = try await latencies(connection)
                var details = ReportDetails(report: try await report(connection, latencies: latencies))
                try await throughput(connection, bins: bins, into: &details)
                details.chartLatency(of: latencies, bins: max(bins / 2, 1))
                details.comparisons = try await self.comparisons(connection, limit: comparisons, textLimit: textLimit)
                return details
            }
        }
    }

    func throughput(_ connection: PostgresConnection, bins: Int, into details: inout ReportDetails) async throws {
        let ended = "FROM §rows WHERE state IN ('succeeded', 'failed') AND finished_at IS NOT NULL"
        var span: (Double, Double)?
        for try await (first, last) in try await query(connection, "SELECT min(finished_at), max(finished_at) \(ended)", [])
            .decode((Double?, Double?).self)
        {
            if let first, let last { span = (first, last) }
        }
        guard let (first, last) = span else { return }
        let (start, end) = (Date(timeIntervalSince1970: first), Date(timeIntervalSince1970: last))
        let (width, count) = ReportDetails.timeBins(first: start, last: end, count: bins)
        (details.firstFinished, details.lastFinished, details.binSeconds) = (start, end, width)
        details.throughput = (0..<count).map { ReportDetails.TimeBin(start: start + Double($0) * width) }
        let rows = try await query(connection, 
                """
                SELECT least(floor((finished_at - $1) / $2)::bigint, $3) AS bin, count(*) FILTER (WHERE state = 'succeeded'),
                    count(*) FILTER (WHERE state = 'failed')
                \(ended) GROUP BY bin
                """,
                [.double(first), .double(width), .int(count - 1)]
            )
        for try await (bin, succeeded, failed) in rows.decode((Int, Int, Int).self) {
            (details.throughput[bin].succeeded, details.throughput[bin].failed) = (succeeded, failed)
        }
    }

    /// What the report shows for a row: the schema's `answer_text` for a succeeded row,
    /// `error: <code>` for a failed one, NULL for one not done.
    static let answerSQL = """
        CASE WHEN state = 'failed' THEN 'error: ' || coalesce(error_code, 'unknown')
            WHEN state <> 'succeeded' OR response IS NULL THEN NULL
            ELSE §answer_text(api, response) END
        """

    func comparisons(_ connection: PostgresConnection, limit: Int, textLimit: Int) async throws -> [ReportDetails.Comparison] {
        guard limit > 0, try await value(Int.self, connection, "SELECT count(*) FROM (SELECT DISTINCT variant FROM §rows LIMIT 2) AS v") ?? 0 > 1
        else { return [] }
        var comparisons: [String: ReportDetails.Comparison] = [:]
        let chosen = try await query(connection, 
                """
                WITH answers AS (SELECT id, seq, variant, \(Self.answerSQL) AS answer FROM §rows)
                SELECT id, min(seq), count(DISTINCT answer) > 1 AS disagree FROM answers
                GROUP BY id HAVING count(DISTINCT variant) > 1 ORDER BY disagree DESC, min(seq) LIMIT $1
                """,
                [.int(limit)]
            )
        for try await (id, seq, disagree) in chosen.decode((String, Int, Bool).self) {
            comparisons[id] = .init(id: id, seq: Int64(seq), disagree: disagree, answers: [])
        }
        guard !comparisons.isEmpty else { return [] }
        let rows = try await query(connection, 
                """
                SELECT id, variant, state, left(\(Self.answerSQL), $1::integer), latency_ms, completion_tokens, finish, left(§prompt_text(body), $1::integer)
                FROM §rows WHERE id = ANY($2) ORDER BY id, seq
                """,
                [.int(textLimit + 1), .texts(Array(comparisons.keys))]
            )
        for try await (id, variant, state, text, latency, tokens, finish, prompt) in rows.decode(
            (String, String, String, String?, Double?, Int?, String?, String?).self
        ) {
            comparisons[id]?.answers.append(
                .init(
                    variant: variant, state: RowState(rawValue: state) ?? .pending, text: text.map { ReportDetails.cut($0, textLimit) },
                    latencyMs: latency, completionTokens: tokens, finish: finish
                )
            )
            if comparisons[id]?.prompt == nil { comparisons[id]?.prompt = prompt.map { ReportDetails.cut($0, textLimit) } }
        }
        return ReportDetails.ordered(Array(comparisons.values), limit: limit)
    }
}
