import Foundation

/// The emulator's knobs as a user sets them: the job file's `emulator:` block and the
/// `foundry-batch emulator` command's options are both this one type, so the two cannot
/// drift apart. A knob left nil keeps the configuration's value.
public struct EmulatorSettings: Sendable, Equatable {
    public var tokenTTL: Double?
    public var rpm: Int?
    public var tpm: Int?
    public var latencyMs: Double?
    public var latencyJitterMs: Double?
    public var faultRate: Double?
    public var throttleRate: Double?
    public var throttleSeconds: Double?
    public var dropRate: Double?
    public var slowRate: Double?
    public var slowSeconds: Double?
    public var retryAfter: Double?
    public var contentFilterPhrase: String?
    public var seed: UInt64?
    /// Batch API: seconds a batch takes from creation to `completed`.
    public var batchSeconds: Double?
    /// Batch API: share of lines that end in the error file with a 500.
    public var batchFailRate: Double?
    /// Batch API: the first this-many batches created expire half done.
    public var batchExpireFirst: Int?
    /// Batch API: the first this-many creates are refused 400 `token_limit_exceeded` (fail fast).
    public var batchRefuseCreates: Int?
    /// Batch API: the first this-many batches fail validation with `token_limit_exceeded`.
    public var batchFailValidationTokenLimit: Int?
    /// Share of structured-output answers (json_schema, json_object) whose content is broken JSON.
    public var outputInvalidRate: Double?
    /// Share of chat and Responses answers cut short (`finish_reason: length`, `incomplete`).
    public var outputTruncatedRate: Double?

    public init() {}

    /// A numeric knob: its job-file key (the command's option is the same with dashes) and
    /// its range; `content_filter_phrase` and `seed` are the others.
    public enum Knob: String, CaseIterable, Sendable {
        case tokenTTL = "token_ttl", rpm, tpm, latencyMs = "latency_ms", latencyJitterMs = "latency_jitter_ms"
        case faultRate = "fault_rate", throttleRate = "throttle_rate", throttleSeconds = "throttle_seconds", dropRate = "drop_rate"
        case slowRate = "slow_rate", slowSeconds = "slow_seconds", retryAfter = "retry_after"
        case batchSeconds = "batch_seconds", batchFailRate = "batch_fail_rate", batchExpireFirst = "batch_expire_first"
        case batchRefuseCreates = "batch_refuse_creates", batchFailValidationTokenLimit = "batch_fail_validation_token_limit"
        case outputInvalidRate = "output_invalid_rate", outputTruncatedRate = "output_truncated_rate"

        public var key: String { rawValue }
        /// The command-line spelling: `--token-ttl`.
        public var option: String { "--" + rawValue.replacingOccurrences(of: "_", with: "-") }
        public var wholeNumber: Bool {
            switch self {
            case .rpm, .tpm, .batchExpireFirst, .batchRefuseCreates, .batchFailValidationTokenLimit: true
            default: false
            }
        }

        public var range: ClosedRange<Double> {
            switch self {
            case .tokenTTL: 1...86_400
            case .rpm, .tpm: 1...1e12
            case .latencyMs, .latencyJitterMs: 0...600_000
            case .faultRate, .throttleRate, .dropRate, .slowRate: 0...1
            case .throttleSeconds, .slowSeconds, .retryAfter: 0...86_400
            case .batchSeconds: 0...86_400
            case .batchFailRate: 0...1
            case .batchExpireFirst, .batchRefuseCreates, .batchFailValidationTokenLimit: 0...1_000
            case .outputInvalidRate, .outputTruncatedRate: 0...1
            }
        }

        public func value(in settings: EmulatorSettings) -> Double? {
            switch self {
            case .tokenTTL: settings.tokenTTL
            case .rpm: settings.rpm.map(Double.init)
            case .tpm: settings.tpm.map(Double.init)
            case .latencyMs: settings.latencyMs
            case .latencyJitterMs: settings.latencyJitterMs
            case .faultRate: settings.faultRate
            case .throttleRate: settings.throttleRate
            case .throttleSeconds: settings.throttleSeconds
            case .dropRate: settings.dropRate
            case .slowRate: settings.slowRate
            case .slowSeconds: settings.slowSeconds
            case .retryAfter: settings.retryAfter
            case .batchSeconds: settings.batchSeconds
            case .batchFailRate: settings.batchFailRate
            case .batchExpireFirst: settings.batchExpireFirst.map(Double.init)
            case .batchRefuseCreates: settings.batchRefuseCreates.map(Double.init)
            case .batchFailValidationTokenLimit: settings.batchFailValidationTokenLimit.map(Double.init)
            case .outputInvalidRate: settings.outputInvalidRate
            case .outputTruncatedRate: settings.outputTruncatedRate
            }
        }

        /// Sets the knob; `value` must be in ``range`` (whole where ``wholeNumber``).
        public func set(_ value: Double, in settings: inout EmulatorSettings) {
            switch self {
            case .tokenTTL: settings.tokenTTL = value
            case .rpm: settings.rpm = Int(value)
            case .tpm: settings.tpm = Int(value)
            case .latencyMs: settings.latencyMs = value
            case .latencyJitterMs: settings.latencyJitterMs = value
            case .faultRate: settings.faultRate = value
            case .throttleRate: settings.throttleRate = value
            case .throttleSeconds: settings.throttleSeconds = value
            case .dropRate: settings.dropRate = value
            case .slowRate: settings.slowRate = value
            case .slowSeconds: settings.slowSeconds = value
            case .retryAfter: settings.retryAfter = value
            case .batchSeconds: settings.batchSeconds = value
            case .batchFailRate: settings.batchFailRate = value
            case .batchExpireFirst: settings.batchExpireFirst = Int(value)
            case .batchRefuseCreates: settings.batchRefuseCreates = Int(value)
            case .batchFailValidationTokenLimit: settings.batchFailValidationTokenLimit = Int(value)
            case .outputInvalidRate: settings.outputInvalidRate = value
            case .outputTruncatedRate: settings.outputTruncatedRate = value
            }
        }
    }

    public static var knobs: [Knob] { Knob.allCases }

    /// Every key of the `emulator:` block.
    public static var keys: Set<String> { Set(knobs.map(\.key) + ["content_filter_phrase", "seed"]) }

    /// The first knob out of its range, with what is wrong; nil when all are fine.
    public var problem: (knob: Knob, message: String)? {
        for knob in Self.knobs {
            guard let value = knob.value(in: self) else { continue }
            if !value.isFinite || !knob.range.contains(value) {
                let bound = { (number: Double) in number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number) }
                return (knob, "must be a number from \(bound(knob.range.lowerBound)) to \(bound(knob.range.upperBound)), got \(value)")
            }
        }
        return nil
    }
}

extension EmulatorConfiguration {
    /// Applies the knobs that are set.
    public mutating func apply(_ settings: EmulatorSettings) {
        if let value = settings.tokenTTL { tokenTTL = value }
        requestsPerMinute = settings.rpm ?? requestsPerMinute
        tokensPerMinute = settings.tpm ?? tokensPerMinute
        if let value = settings.latencyMs { latencyMs = value }
        if let value = settings.latencyJitterMs { latencyJitterMs = value }
        if let value = settings.faultRate { faultRate = value }
        if let value = settings.throttleRate { throttleRate = value }
        if let value = settings.throttleSeconds { throttleSeconds = value }
        if let value = settings.dropRate { dropRate = value }
        if let value = settings.slowRate { slowRate = value }
        if let value = settings.slowSeconds { slowSeconds = value }
        fixedRetryAfter = settings.retryAfter ?? fixedRetryAfter
        if let value = settings.contentFilterPhrase { contentFilterPhrase = value }
        if let value = settings.seed { seed = value }
        if let value = settings.batchSeconds { batchSeconds = value }
        if let value = settings.batchFailRate { batchFailRate = value }
        if let value = settings.batchExpireFirst { batchExpireFirst = value }
        if let value = settings.batchRefuseCreates { batchRefuseCreates = value }
        if let value = settings.batchFailValidationTokenLimit { batchFailValidationTokenLimit = value }
        if let value = settings.outputInvalidRate { outputInvalidRate = value }
        if let value = settings.outputTruncatedRate { outputTruncatedRate = value }
    }
}

extension EmulatorConfiguration {
    /// `foundry-batch emulator`'s configuration: the demo app with the secret in
    /// `AZURE_CLIENT_SECRET` (none accepted without it), the key in `AZURE_OPENAI_API_KEY`,
    /// and the managed identity header in `IDENTITY_HEADER`. None of them is printed.
    public static func standalone(environment: [String: String]) -> EmulatorConfiguration {
        var configuration = EmulatorConfiguration.demo(secret: environment["AZURE_CLIENT_SECRET"] ?? UUID().uuidString)
        configuration.secretGiven = environment["AZURE_CLIENT_SECRET"] != nil
        if let key = environment["AZURE_OPENAI_API_KEY"] { configuration.apiKeys = [key] }
        if let header = environment["IDENTITY_HEADER"] { configuration.identityHeader = header }
        return configuration
    }
}

extension Emulator {
    /// What `foundry-batch emulator` prints when it is up: where each service answers.
    public var banner: String {
        let configuration = state.configuration
        return """
            Foundry emulator on \(baseURL)
              Foundry endpoint:     \(baseURL)  (deployments: \(configuration.deployments.joined(separator: ", ")))
              Entra authority host: \(baseURL)  tenant \(EmulatorConfiguration.demoTenantID), client \(EmulatorConfiguration.demoClientID)
              client secret:        \(configuration.secretGiven ? "the value of AZURE_CLIENT_SECRET" : "none accepted (set AZURE_CLIENT_SECRET before starting)")
              stats:                \(baseURL)/emulator/stats
            Press Ctrl-C to stop.
            """
    }
}
