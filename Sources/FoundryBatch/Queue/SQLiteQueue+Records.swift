import GRDB

// The rows the SQLite queue reads, decoded by name: each query names its columns as the
// record's properties (`estimated_tokens AS estimatedTokens`).

extension ClaimedRow: FetchableRecord {}
extension QueuedRow: FetchableRecord {}
extension StateCount: FetchableRecord {}
extension PendingFigures: FetchableRecord {}
extension QueueReport.ErrorFigure: FetchableRecord {}
extension RowRecord: FetchableRecord {}
