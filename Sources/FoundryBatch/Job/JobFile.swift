import FoundryAuth
import FoundryEmulator
import Foundation

/// A job file as the user wrote it: what to send, where, with which credential and limits.
///
/// Paths are kept as written (with `{date}` and `{name}` unexpanded); ``resolve(date:)``
/// turns them into absolute paths against the job file's folder, so cron can run a job
/// from any working directory.
///
/// ```swift
/// let job = try JobFile.load(path: "jobs/demo.yaml")
/// let paths = try job.resolve(date: nil)
/// ```
public struct JobFile: Sendable {
    /// Which API a simple input line is sent to: the transport's own type.
    public typealias API = ServiceAPI

    /// Where requests go.
    public enum Endpoint: Sendable, Equatable {
        /// The built-in emulator, started in-process on a free loopback port.
        case emulator
        /// A Foundry / Azure OpenAI resource or any OpenAI-compatible base URL.
        case url(String)
    }

    /// The credential kinds of the contract's `auth:` key, owned by FoundryAuth.
    public typealias AuthKind = CredentialKind

    /// The `limits:` block, with the contract's defaults.
    public struct Limits: Sendable, Equatable {
        /// Workers, and the ceiling of the adaptive concurrency limit.
        public var concurrency = 16
        public var requestsPerMinute: Int?
        public var tokensPerMinute: Int?
        public var maxAttempts = 8
        /// Seconds a single request may take.
        public var timeout: Double = 120
        /// A Retry-After longer than this (seconds) stops the run with exit 3.
        public var maxRetryWait: Double = 300
        /// Stop cleanly (exit 3) before the job's total tokens would pass this.
        public var maxTokensTotal: Int?
        /// Tries again of an answer that is not the structured output asked for, before the row fails.
        public var maxOutputRetries = 2
        /// What an answer cut off at its token cap is: kept (counted in `status`), or a failure (`truncated`).
        public var truncated: TruncatedAnswers = .keep
        public init() {}

        /// `limits.truncated`.
        public enum TruncatedAnswers: String, Sendable, CaseIterable {
            case keep, fail
        }

        /// The largest values the job file accepts: beyond them a limit is a typo, and
        /// durations and sums built from it would overflow.
        public static let maxConcurrency = 10_000
        public static let maxPerMinute = 1_000_000_000_000
        public static let maxAttempts = 1_000
        /// A day, in seconds.
        public static let maxTimeout: Double = 86_400
        /// A week, in seconds.
        public static let maxRetryWait: Double = 604_800
    }

    /// One arm of an evaluation sweep: every row runs once per variant.
    public struct Variant: Sendable, Equatable {
        public var name: String
        public var deployment: String?
        public var request: [(String, JSONValue)]

        public static func == (lhs: Variant, rhs: Variant) -> Bool {
            lhs.name == rhs.name && lhs.deployment == rhs.deployment
                && JSONValue.object(lhs.request) == JSONValue.object(rhs.request)
        }
    }

    /// Optional prices per 1,000 tokens, for the cost estimate in `status` and the summary.
    public struct Prices: Sendable, Equatable {
        public var promptPer1K: Double = 0
        public var completionPer1K: Double = 0
        /// The batch price relative to online (`prices.batch_factor`): Azure's Global Batch
        /// costs half of Global Standard.
        public var batchFactor: Double = 0.5

        /// The cost of `prompt` and `completion` tokens at these prices: the one formula
        /// behind `status`, the run summary and `--dry-run`.
        public func cost(prompt: Int, completion: Int) -> Double {
            Double(prompt) / 1000 * promptPer1K + Double(completion) / 1000 * completionPer1K
        }

        /// The cost of `counts`: the tokens answered by batches at the batch price, the rest online.
        public func cost(_ counts: QueueCounts) -> Double {
            cost(prompt: counts.promptTokens - counts.batchPromptTokens, completion: counts.completionTokens - counts.batchCompletionTokens)
                + batchFactor * cost(prompt: counts.batchPromptTokens, completion: counts.batchCompletionTokens)
        }
    }

    /// How a job's rows reach the service.
    public enum Engine: String, Sendable, CaseIterable {
        /// One request per row, as the rows' targets' quotas allow.
        case online
        /// Files of rows submitted to the provider's Batch API: half the price, within its
        /// completion window, against a separate enqueued-token quota.
        case batch
        /// Batches first; the rows left go online when only that meets `batch.finish_by`.
        case auto
    }

    /// The `batch:` block: how `engine: batch` and `engine: auto` cut and follow batches.
    public struct Batch: Sendable, Equatable {
        /// The Global or Data-zone Batch deployment; nil sends the row's model (its target's deployment).
        public var deployment: String?
        public var completionWindow = "24h"
        /// Lines per file: Azure allows 100,000, OpenAI 50,000.
        public var maxRequestsPerFile = 50_000
        /// Bytes per file: both services allow 200 MB.
        public var maxBytesPerFile = 190_000_000
        /// Seconds between status checks of a live batch (Microsoft asks for no less than 60).
        public var pollInterval: Double = 60
        /// `engine: auto`: the local time of day (`HH:MM` or `HH:MM:SS`) by which every row must be done.
        public var finishBy: TimeOfDay?
        public init() {}

        public static let maxRequestsLimit = 100_000
        public static let maxBytesLimit = 200_000_000

        /// The deployment batch lines of `model` name on `target`: `batch.deployment`, else
        /// the target's deployment of the model (the model itself).
        public func deployment(for model: String, on target: Target?) -> String {
            deployment ?? target?.deployment(for: model) ?? model
        }
    }

    /// A local time of day, `HH:MM[:SS]`: `finish_by`.
    public struct TimeOfDay: Sendable, Equatable {
        public var seconds: Int

        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
            guard (2...3).contains(parts.count), parts.allSatisfy({ $0 != nil }) else { return nil }
            let (h, m, s) = (parts[0]!, parts[1]!, parts.count == 3 ? parts[2]! : 0)
            guard (0..<24).contains(h), (0..<60).contains(m), (0..<60).contains(s) else { return nil }
            seconds = h * 3600 + m * 60 + s
        }

        /// The next moment at this time of day, local time: today's, or tomorrow's once it passed.
        public func next(after now: Date, calendar: Calendar = .current) -> Date {
            let midnight = calendar.startOfDay(for: now)
            let today = midnight.addingTimeInterval(TimeInterval(seconds))
            if today > now { return today }
            return calendar.date(byAdding: .day, value: 1, to: midnight)?.addingTimeInterval(TimeInterval(seconds)) ?? today.addingTimeInterval(86_400)
        }
    }

    /// One deployment the job may send to: an entry of `targets:`, or the job's own
    /// endpoint, deployment and auth when it has no `targets:`.
    ///
    /// Rows go to the lowest ``priority`` with headroom and, within it, in proportion to the
    /// targets' quotas; a target that cannot serve (quota exhausted beyond
    /// `max_retry_wait`, no such deployment, credential refused) is parked and the job goes on.
    public struct Target: Sendable, Equatable {
        /// `[A-Za-z0-9._-]+`, unique in the job; on each output line and in `status`.
        public var name: String
        public var endpoint: Endpoint
        /// The deployment's name on that resource; nil sends the row's model as its deployment.
        public var deployment: String?
        public var auth: AuthKind
        /// Where an `api-key` target reads its key.
        public var apiKeyEnv = "AZURE_OPENAI_API_KEY"
        public var apiVersion: String?
        /// Pacing of this target; nil: `limits.tokens_per_minute` / `requests_per_minute`.
        public var tokensPerMinute: Int?
        public var requestsPerMinute: Int?
        /// Lower tiers first: a higher tier gets rows only while every lower one is saturated or parked.
        public var priority = 1
        /// The row models this target serves; nil serves every model.
        public var models: [String]?
        /// The in-process emulator's knobs, for `endpoint: emulator`.
        public var emulator = EmulatorSettings()
        /// Where the target is written in the job file, for errors found after parsing
        /// (an unset `api_key_env`).
        public var line: Int?

        /// Whether rows asking for `model` may go here.
        public func serves(_ model: String) -> Bool { models?.contains(model) ?? true }

        /// The deployment a row asking for `model` is sent to on this target.
        public func deployment(for model: String) -> String { deployment ?? model }

        /// How much of the tier's rows this target takes: its quota (its own, else the job's
        /// `limits:` that pace it), else an equal share.
        public func weight(limits: Limits) -> Double {
            if let tokens = tokensPerMinute ?? limits.tokensPerMinute { return Double(tokens) }
            if let requests = requestsPerMinute ?? limits.requestsPerMinute { return Double(requests) * 1000 }
            return 1
        }
    }

    /// Knobs of the in-process emulator, for `endpoint: emulator`: the emulator's own type,
    /// which the `emulator` command's options fill too.
    public typealias EmulatorSettings = FoundryEmulator.EmulatorSettings

    /// The job file's own path, absolute.
    public var path: String
    public var name: String
    public var inputs: [String]
    public var output: String?
    public var errors: String?
    public var state: String?
    /// `metrics_file:`: where `run` writes Prometheus metrics (none when nil).
    public var metricsFile: String?
    /// The top-level endpoint; nil when every target names its own.
    public var endpoint: Endpoint?
    public var deployment: String?
    public var api: API = .chat
    public var apiVersion: String?
    public var auth: AuthKind = .default
    public var request: [(String, JSONValue)] = []
    public var limits = Limits()
    public var variants: [Variant] = []
    public var prices: Prices?
    public var emulator = EmulatorSettings()
    /// The job's `targets:`; empty when it has none (``targetsToUse`` then makes one).
    public var targets: [Target] = []
    public var engine: Engine = .online
    public var batch = Batch()

    /// The folder relative paths resolve against.
    public var directory: String { (path as NSString).deletingLastPathComponent }

    /// Whether the job names its own `targets:`; output lines then say which one answered.
    public var isPooled: Bool { !targets.isEmpty }

    /// The targets a run sends to: `targets:`, or one made of the job's own endpoint,
    /// auth and api version. A target without pacing of its own is paced by `limits:`.
    public var targetsToUse: [Target] {
        if !targets.isEmpty { return targets }
        return [
            Target(
                name: "default", endpoint: endpoint ?? .emulator, deployment: nil, auth: auth, apiVersion: apiVersion, emulator: emulator
            )
        ]
    }

    /// The models rows of this job ask for, as far as the job file tells: `deployment:` and
    /// the variants'. Batch API lines may name others; the loader checks those.
    public var knownModels: [String] {
        var models: [String] = []
        for model in [deployment] + variants.map(\.deployment) {
            if let model, !models.contains(model) { models.append(model) }
        }
        return models
    }
}

extension JobFile {
    /// Reads and validates a job file; every problem names the file, line and key.
    public static func load(path: String) throws(JobFileError) -> JobFile {
        let absolute = FilePaths.absolute(path, relativeTo: FileManager.default.currentDirectoryPath)
        guard let data = FileManager.default.contents(atPath: absolute) else {
            throw JobFileError(file: path, message: "cannot read the job file (does it exist?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw JobFileError(file: path, message: "the job file is not UTF-8 text")
        }
        return try parse(yaml: text, path: absolute, displayPath: path)
    }

    /// Parses job file text; `path` is used to resolve relative paths, `displayPath` in errors.
    public static func parse(yaml: String, path: String, displayPath: String? = nil) throws(JobFileError) -> JobFile {
        let reader = YAMLReader(file: displayPath ?? path)
        return try reader.job(yaml: yaml, path: path)
    }
}
