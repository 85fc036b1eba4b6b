import GRDB

// The rows the SQLite queue reads, decoded by name: each query names its columns as the
// record's properties (`estimated_tokens AS estimatedTokens`).

extension ClaimedRow: FetchableRecord {}
extension QueuedRow: FetchableRecord {}
extension StateCount: FetchableRecord {}
extension PendingFigures: FetchableRecord {}
extension QueueReport.ErrorFigure: FetchableRecord {}

/// A finished row as stored: the error's parts in their own columns.
struct FinishedRow: Decodable, FetchableRecord {
    var seq: Int64
    var id: String
    var variant: String
    var state: RowState
    var attempts: Int
    var metadata: String?
    var statusCode: Int?
    var requestID: String?
    var clientRequestID: String?
    var response: String?
    var errorCode: String?
    var errorMessage: String?

    var exportRow: ExportRow {
        ExportRow(
            seq: seq, id: id, variant: variant, state: state, attempts: attempts, metadata: metadata, statusCode: statusCode,
            requestID: requestID, clientRequestID: clientRequestID, response: response,
            error: errorCode.map { RowError(code: $0, message: errorMessage ?? "", statusCode: statusCode) }
        )
    }
}
