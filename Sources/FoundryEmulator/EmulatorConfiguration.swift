import Foundation

/// The knobs of the emulator: who may sign in, what is deployed, how fast and how faulty.
///
/// The defaults serve the demo: one app registration (see ``demoClient``), common
/// deployments, no rate limits, no faults, one-hour tokens.
public struct EmulatorConfiguration: Sendable {
    /// An app registration (service principal) known to the emulated Entra tenant.
    public struct Client: Sendable, Equatable {
        public var tenantID: String
        public var clientID: String
        /// The client secret, or `nil` when the app signs in with a certificate or federation only.
        public var secret: String?
        /// A secret past its end date: sign-in fails with AADSTS7000222.
        public var secretExpired = false
        /// PEM of the certificate whose key signs client assertions.
        public var certificatePEM: String?
        /// Whether the principal holds "Cognitive Services OpenAI User" on the resource.
        public var hasRole = true

        public init(tenantID: String, clientID: String, secret: String? = nil, certificatePEM: String? = nil, hasRole: Bool = true) {
            self.tenantID = tenantID
            self.clientID = clientID
            self.secret = secret
            self.certificatePEM = certificatePEM
            self.hasRole = hasRole
        }
    }

    /// The interface the emulator listens on; loopback only.
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var port = 0

    public var clients: [Client] = []
    /// API keys accepted in the `api-key` header.
    public var apiKeys: Set<String> = []
    /// Deployment names served; `"*"` serves any name.
    public var deployments: [String] = ["gpt-5-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    /// The managed identity's header secret (`IDENTITY_HEADER`), and its principal.
    public var identityHeader = UUID().uuidString
    public var managedIdentityClientID = "emulator-managed-identity"
    /// Whether the managed identity holds the role on the resource.
    public var managedIdentityHasRole = true
    /// The next this-many IMDS requests answer 410 (identity not ready yet), as IMDS does
    /// while a VM's identity is being set up.
    public var imdsTransientFailures = 0
    /// Answer every token request 500, to test a refresh failing while a token is still valid.
    public var tokenEndpointDown = false
    /// Lifetime of issued access tokens, seconds.
    public var tokenTTL: Double = 3600

    /// Requests per minute per deployment; `nil` is unlimited. Counted over 10-second windows.
    public var requestsPerMinute: Int?
    /// Tokens per minute per deployment; prompt estimate + max_tokens charged up front.
    public var tokensPerMinute: Int?
    /// Answer every inference request with 429 and this Retry-After (seconds): quota exhausted.
    public var fixedRetryAfter: Double?

    /// Added to every inference answer.
    public var latencyMs: Double = 0
    /// A random 0..<jitter added on top of the latency.
    public var latencyJitterMs: Double = 0
    /// Share of inference requests answered 429 with a short Retry-After (``throttleSeconds``),
    /// whatever the buckets say: a noisy neighbour on a shared deployment.
    public var throttleRate: Double = 0
    public var throttleSeconds: Double = 0.5
    /// Share of inference requests answered 500 or 503.
    public var faultRate: Double = 0
    /// Share of inference requests whose connection is dropped before an answer.
    public var dropRate: Double = 0
    /// Share of inference requests answered only after ``slowSeconds``.
    public var slowRate: Double = 0
    public var slowSeconds: Double = 30
    /// A prompt containing this phrase is refused with 400 `content_filter`.
    public var contentFilterPhrase: String? = "BLOCKME"
    /// Seed of the fault dice, so a run can be repeated.
    public var seed: UInt64 = 42
    /// Batch API: seconds from a batch's creation to `completed` (a tenth validating, eight
    /// tenths in progress, lines finishing evenly, a tenth finalizing). 0 finishes at once.
    public var batchSeconds: Double = 2
    /// Batch API: share of lines answered 500 in the error file, chosen from ``seed`` and the
    /// line's `custom_id`, so the same lines fail on every run.
    public var batchFailRate: Double = 0
    /// Batch API: the first this-many batches created (that pass validation) expire half done.
    public var batchExpireFirst = 0
    /// Batch API: the first this-many creates are refused 400 `token_limit_exceeded`, as
    /// Azure's fail-fast regions answer when the enqueued-token quota is used up.
    public var batchRefuseCreates = 0
    /// Batch API: the first this-many batches fail validation with `token_limit_exceeded`,
    /// as regions without fail fast report the enqueued-token quota.
    public var batchFailValidationTokenLimit = 0
    /// Share of structured-output answers (`response_format` or `text.format` json_schema or
    /// json_object) whose content is not valid JSON, for the output checks' `invalid_output`.
    /// Rolled from ``seed``, the prompt and how often it was answered before, so a retry of
    /// the same prompt rolls again; online and in batch lines alike.
    public var outputInvalidRate: Double = 0
    /// Share of chat and Responses answers cut to half their text and marked as having hit the
    /// token cap (`finish_reason: length`; Responses `incomplete`), rolled as ``outputInvalidRate``.
    public var outputTruncatedRate: Double = 0
    /// Whether the secret was given by the user (for the banner); a made-up one is never told.
    public var secretGiven = true

    /// The app registration the demo and `endpoint: emulator` sign in with.
    public static let demoTenantID = "00000000-0000-4000-8000-00000000e0e0"
    public static let demoClientID = "11111111-1111-4111-8111-111111111111"

    public init() {}

    /// The demo configuration, with a demo app whose secret is made up at start.
    public static func demo(secret: String = UUID().uuidString) -> EmulatorConfiguration {
        var configuration = EmulatorConfiguration()
        configuration.clients = [Client(tenantID: demoTenantID, clientID: demoClientID, secret: secret)]
        return configuration
    }
}
