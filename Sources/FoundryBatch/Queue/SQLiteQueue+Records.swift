import GRDB

// The rows the SQLite queue reads, decoded by name: each query names its columns as the
// record's properties (`estimated_tokens AS estimatedTokens`).

extension ClaimedRow: FetchableRecord {}
extension QueuedRow: FetchableRecord {}
extension StateCount: FetchableRecord {}
extension PendingFigures: FetchableRecord {}
extension QueueReport.ErrorFigure: FetchableRecord {}
extension QueueTally.Answers: FetchableRecord {}
extension RowRecord: FetchableRecord {}

/// Answered rows and their tokens on one target.
struct TargetRow: Decodable, FetchableRecord {
    var target: String
    var rows: Int
    var promptTokens: Int
    var completionTokens: Int
    var truncated = 0
    var filtered = 0
    var batchPromptTokens = 0
    var batchCompletionTokens = 0
}

/// A target a run parked, as the `parkings` table keeps it.
struct ParkingRow: Decodable, FetchableRecord {
    var target: String
    var until: Double?
    var reason: String
    var at: Double
}
