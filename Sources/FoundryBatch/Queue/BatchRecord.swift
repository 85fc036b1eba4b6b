import Foundation

/// Where one of a job's batches is in its life, as committed to the queue before and
/// after each step, so a run killed at any moment resumes at the step it was in.
public enum BatchPhase: String, Sendable, Codable, CaseIterable {
    /// Rows are bound to the batch; its file is not uploaded yet (a rerun writes it again).
    case cut
    /// The file is uploaded (`fileID`); the batch is not created yet, or its creation was
    /// refused for the enqueued-token quota and waits for `notBefore`.
    case uploaded
    /// A create request is about to go out or went out without an answer: a rerun first
    /// looks for a batch of this file at the provider before it creates one.
    case creating
    /// The batch runs at the provider (`batchID`).
    case submitted
    /// The provider says the batch ended; its output and error files are to be read.
    case ended
    /// Its rows are settled: every answer recorded, the rest returned to pending.
    case collected

    /// Whether rows are still bound to the batch.
    public var isLive: Bool { self != .collected }
}

/// One batch of a job: the rows it holds (under the lease owner ``owner``), its file and
/// batch ids at the provider, and its last known status.
public struct BatchRecord: Sendable, Equatable, Decodable {
    /// The queue's number for the batch, from 1.
    public var number: Int64
    /// The target whose resource runs the batch.
    public var target: String
    /// The rows' model (the `deployment` of each row).
    public var model: String
    public var api: ServiceAPI
    public var phase: BatchPhase
    /// Lines in the batch's file, and their bytes.
    public var rows: Int
    public var bytes: Int
    /// The rows' estimated tokens, held against `limits.max_tokens_total` while the batch lives.
    public var tokens = 0
    public var fileID: String?
    public var batchID: String?
    /// The provider's status, in its own spelling.
    public var status: String?
    public var completed = 0
    public var failed = 0
    public var createdAt: Date
    public var submittedAt: Date?
    /// When the provider's completion window ends.
    public var endsBy: Date?
    public var outputFileID: String?
    public var errorFileID: String?
    /// A refused create is tried again no earlier than this.
    public var notBefore: Date?
    /// Creates refused so far (for the back-off).
    public var refusals = 0
    /// `cancel` asked for the batch to be cancelled.
    public var cancelRequested = false
    /// The last thing the provider said that went wrong (a validation error, a refusal).
    public var message: String?
    /// The run advancing the batch now, and until when its claim holds: one process at a
    /// time uploads, creates, polls or collects a batch.
    public var owner: String?
    public var ownerUntil: Date?

    /// The lease owner of the batch's rows: no worker's, and never expiring while the batch lives.
    public var rowOwner: String { Self.owner(number) }

    public static func owner(_ number: Int64) -> String { "batch:\(number)" }

    /// The name of the batch's file, as uploaded.
    public var fileName: String { "foundry-batch-\(number).jsonl" }

    public init(number: Int64, target: String, model: String, api: ServiceAPI, rows: Int, bytes: Int, tokens: Int = 0, createdAt: Date) {
        self.number = number
        self.target = target
        self.model = model
        self.api = api
        phase = .cut
        self.rows = rows
        self.bytes = bytes
        self.tokens = tokens
        self.createdAt = createdAt
    }
}

/// What ``RowQueue/cutBatch(_:now:)`` binds: rows of one model and API, in input order,
/// within a file's limits.
public struct BatchCut: Sendable, Equatable {
    public var target: String
    public var model: String
    public var api: ServiceAPI
    public var maxRows: Int
    public var maxBytes: Int
    /// Bytes a line adds to its row's stored body (the envelope, the custom id, a longer
    /// deployment name), so the file stays within ``maxBytes``.
    public var lineOverhead: Int
    /// The estimated tokens the batch may hold: what is left of `limits.max_tokens_total`.
    /// Unlike the byte limit, not even one row goes beyond it.
    public var maxTokens = Int.max

    public init(target: String, model: String, api: ServiceAPI, maxRows: Int, maxBytes: Int, lineOverhead: Int, maxTokens: Int = .max) {
        self.target = target
        self.model = model
        self.api = api
        self.maxRows = maxRows
        self.maxBytes = maxBytes
        self.lineOverhead = lineOverhead
        self.maxTokens = maxTokens
    }
}

/// Due pending rows of one model and API: what one batch file may hold.
public struct PendingGroup: Sendable, Equatable, Decodable {
    public var model: String
    public var api: ServiceAPI
    public var rows: Int
    public var bytes: Int
}

/// The rows a batch holds, as its file needs them.
public struct BatchLine: Sendable, Equatable, Decodable {
    public var seq: Int64
    public var id: String
    public var api: ServiceAPI
    public var deployment: String
    public var body: String
    public var attempts: Int
    public var outputRetries = 0
}
