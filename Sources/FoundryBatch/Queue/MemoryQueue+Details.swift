import Foundation
import Synchronization

extension MemoryQueue {
    public func details(bins: Int, comparisons: Int, textLimit: Int) async throws -> ReportDetails {
        let (rows, report) = try await (storage.withLock { $0.rows }, report())
        var details = ReportDetails(report: report)
        Self.throughput(rows, bins: bins, into: &details)
        details.chartLatency(of: Self.latencies(rows), bins: max(bins / 2, 1))
        details.comparisons = Self.comparisons(rows, limit: comparisons, textLimit: textLimit)
        return details
    }

    static func throughput(_ rows: [Stored], bins: Int, into details: inout ReportDetails) {
        let ended = rows.filter { $0.state == .succeeded || $0.state == .failed }.compactMap { row in row.finishedAt.map { (row.state, $0) } }
        guard let first = ended.map(\.1).min(), let last = ended.map(\.1).max() else { return }
        let (width, count) = ReportDetails.timeBins(first: first, last: last, count: bins)
        (details.firstFinished, details.lastFinished, details.binSeconds) = (first, last, width)
        details.throughput = (0..<count).map { ReportDetails.TimeBin(start: first + Double($0) * width) }
        for (state, at) in ended {
            let bin = min(Int(at.timeIntervalSince(first) / width), count - 1)
            if state == .succeeded { details.throughput[bin].succeeded += 1 } else { details.throughput[bin].failed += 1 }
        }
    }

    /// As ``SQLiteQueue`` shows a row: its answer's text, `error: <code>`, or nil.
    static func shown(_ row: Stored) -> String? {
        switch row.state {
        case .failed: "error: " + (row.record.errorCode ?? "unknown")
        case .succeeded: row.record.response.map { AnswerText.shown(body: $0, api: row.row.api) }
        case .pending, .running: nil
        }
    }

    static func comparisons(_ rows: [Stored], limit: Int, textLimit: Int) -> [ReportDetails.Comparison] {
        guard limit > 0, Set(rows.map(\.row.variant)).count > 1 else { return [] }
        var byID: [String: [Stored]] = [:]
        for row in rows { byID[row.row.id, default: []].append(row) }
        let candidates = byID.values.filter { Set($0.map(\.row.variant)).count > 1 }.map { group in
            ReportDetails.Comparison(
                id: group[0].row.id, seq: group[0].seq, prompt: AnswerText.prompt(ofRequest: group[0].row.body).map { ReportDetails.cut($0, textLimit) },
                disagree: Set(group.compactMap(shown)).count > 1,
                answers: group.map { row in
                    .init(
                        variant: row.row.variant, state: row.state, text: shown(row).map { ReportDetails.cut($0, textLimit) },
                        latencyMs: row.latencyMs, completionTokens: row.completionTokens, finish: row.finish
                    )
                }
            )
        }
        return ReportDetails.ordered(candidates, limit: limit)
    }
}
