/// What the emulator saw, served at `GET /emulator/stats`.
public struct EmulatorStats: Sendable, Codable, Equatable {
    /// Data-plane requests answered (any status).
    public var requests = 0
    public var byStatus: [String: Int] = [:]
    /// Route ("chat", "responses", "embeddings", "deployments") -> status -> count.
    public var byRoute: [String: [String: Int]] = [:]
    /// Token requests by grant ("client_secret", "client_assertion", "managed_identity", "imds").
    public var tokenRequests: [String: Int] = [:]
    public var tokenRequestsByStatus: [String: Int] = [:]
    public var peakConcurrency = 0
    public var inFlight = 0
    /// Requests answered 429.
    public var throttled = 0
    /// Requests that arrived while an earlier 429's Retry-After was still running (after a
    /// 50 ms allowance), any prompt's, and the most that arrived inside one such window.
    ///
    /// A timing figure: a request a client launched before the 429 reached it counts too, and
    /// on a loaded machine the 429 takes longer to arrive, so a few per window are no fault.
    public var requestsInsideRetryAfter = 0
    public var maxRequestsInsideOneRetryAfter = 0
    /// Requests for a prompt that arrived before the Retry-After of that prompt's own 429 had
    /// run out: a retry sent too early. Exact on any machine, since the client had that 429.
    public var retriesInsideRetryAfter = 0
    /// Client request ids seen more than once, and the most requests one id carried.
    public var repeatedClientRequestIDs = 0
    public var maxRequestsPerClientRequestID = 0
    /// 200 answers to a prompt that had already been answered 200: work done twice.
    public var repeatedAnswers = 0
    /// Tokens charged against TPM, and tokens (prompt + completion) in 200 answers.
    public var tokensCharged = 0
    public var tokensServed = 0

    /// Batch API calls (files and batches), kept apart from ``requests`` and ``byRoute`` so a
    /// test can tell that a batch job sent nothing online: call ("files.upload",
    /// "files.get", "files.content", "files.delete", "batches.create", "batches.get",
    /// "batches.list", "batches.cancel") -> status -> count.
    public var batchCalls: [String: [String: Int]] = [:]
    public var filesUploaded = 0
    public var batchesCreated = 0
    /// Creates refused 400 `token_limit_exceeded`.
    public var batchCreatesRefused = 0
    /// Batch lines answered 200 (in an output file), and lines that ran and failed (error file).
    public var batchLinesAnswered = 0
    public var batchLinesFailed = 0
    /// Tokens (prompt + completion) in batch lines answered 200.
    public var batchTokensServed = 0
    /// Batch lines answered 200 for a prompt already answered 200, online or in a batch.
    public var batchRepeatedAnswers = 0
    /// Lines of a created batch whose custom id was in another batch still running: a row in
    /// two live batches.
    public var batchRowsInTwoLiveBatches = 0
    /// Chat and Responses answers (online and in batch lines) the output knobs spoilt: content
    /// made broken JSON (`output_invalid_rate`), or cut short (`output_truncated_rate`).
    public var outputInvalid = 0
    public var outputTruncated = 0

    public var totalTokenRequests: Int { tokenRequests.values.reduce(0, +) }

    enum CodingKeys: String, CodingKey {
        case requests, byStatus = "by_status", byRoute = "by_route", tokenRequests = "token_requests"
        case tokenRequestsByStatus = "token_requests_by_status", peakConcurrency = "peak_concurrency"
        case inFlight = "in_flight", throttled, requestsInsideRetryAfter = "requests_inside_retry_after"
        case maxRequestsInsideOneRetryAfter = "max_requests_inside_one_retry_after"
        case retriesInsideRetryAfter = "retries_inside_retry_after"
        case repeatedClientRequestIDs = "repeated_client_request_ids"
        case maxRequestsPerClientRequestID = "max_requests_per_client_request_id"
        case repeatedAnswers = "repeated_answers", tokensCharged = "tokens_charged", tokensServed = "tokens_served"
        case batchCalls = "batch_calls", filesUploaded = "files_uploaded", batchesCreated = "batches_created"
        case batchCreatesRefused = "batch_creates_refused", batchLinesAnswered = "batch_lines_answered"
        case batchLinesFailed = "batch_lines_failed", batchTokensServed = "batch_tokens_served"
        case batchRepeatedAnswers = "batch_repeated_answers", batchRowsInTwoLiveBatches = "batch_rows_in_two_live_batches"
        case outputInvalid = "output_invalid", outputTruncated = "output_truncated"
    }
}
