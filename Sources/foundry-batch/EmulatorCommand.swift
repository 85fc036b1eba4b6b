import ArgumentParser
import FoundryEmulator
import Foundation

struct EmulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulator",
        abstract: "Serve a local Foundry + Entra emulator on loopback, for demos and tests.",
        discussion: """
            The app registration is tenant \(EmulatorConfiguration.demoTenantID), client \
            \(EmulatorConfiguration.demoClientID); its secret is taken from AZURE_CLIENT_SECRET and \
            the accepted API key from AZURE_OPENAI_API_KEY (neither is printed). Managed identity \
            answers at /msi/token (header from IDENTITY_HEADER) and /metadata/identity/oauth2/token.
            """
    )

    @Option(help: "The port to listen on (0 picks a free one).")
    var port = 8089

    @Option(help: "Requests per minute per deployment (counted over 10 s windows).") var rpm: Int?
    @Option(help: "Tokens per minute per deployment (prompt estimate + max_tokens, charged up front).") var tpm: Int?
    @Option(help: "Lifetime of issued tokens, seconds (default 3600).") var tokenTtl: Double?
    @Option(help: "Latency added to every answer, milliseconds.") var latencyMs: Double?
    @Option(help: "Random extra latency, up to this many milliseconds.") var latencyJitterMs: Double?
    @Option(help: "Share of requests answered 500 or 503 (0...1).") var faultRate: Double?
    @Option(help: "Share of requests answered 429 (0...1).") var throttleRate: Double?
    @Option(help: "The Retry-After of those 429s, seconds (default 0.5).") var throttleSeconds: Double?
    @Option(help: "Share of requests whose connection is dropped (0...1).") var dropRate: Double?
    @Option(help: "Share of requests answered only after --slow-seconds (0...1).") var slowRate: Double?
    @Option(help: "How slow a slow answer is, seconds (default 30).") var slowSeconds: Double?
    @Option(help: "Answer every request 429 with this Retry-After, seconds (quota exhausted).") var retryAfter: Double?
    @Option(help: "Prompts containing this text are refused by the content filter (default BLOCKME).") var contentFilterPhrase: String?
    @Option(help: "Seed of the fault dice.") var seed: UInt64?
    @Option(help: "Batch API: seconds a batch takes from creation to completed (default 2).") var batchSeconds: Double?
    @Option(help: "Batch API: share of lines answered 500 in the error file (0...1).") var batchFailRate: Double?
    @Option(help: "Batch API: the first N batches expire half done.") var batchExpireFirst: Int?
    @Option(help: "Batch API: the first N creates are refused (token_limit_exceeded).") var batchRefuseCreates: Int?
    @Option(help: "Batch API: the first N batches fail validation (token_limit_exceeded).") var batchFailValidationTokenLimit: Int?
    @Option(help: "Share of structured-output answers that are broken JSON (0...1).") var outputInvalidRate: Double?
    @Option(help: "Share of answers cut off as at max_tokens (0...1).") var outputTruncatedRate: Double?

    /// The options as the one settings type the job file's `emulator:` block also fills.
    var settings: EmulatorSettings {
        var settings = EmulatorSettings()
        (settings.rpm, settings.tpm, settings.tokenTTL, settings.latencyMs, settings.latencyJitterMs) = (rpm, tpm, tokenTtl, latencyMs, latencyJitterMs)
        (settings.faultRate, settings.throttleRate, settings.throttleSeconds, settings.dropRate) = (faultRate, throttleRate, throttleSeconds, dropRate)
        (settings.slowRate, settings.slowSeconds, settings.retryAfter) = (slowRate, slowSeconds, retryAfter)
        (settings.contentFilterPhrase, settings.seed) = (contentFilterPhrase, seed)
        (settings.batchSeconds, settings.batchFailRate, settings.batchExpireFirst) = (batchSeconds, batchFailRate, batchExpireFirst)
        (settings.batchRefuseCreates, settings.batchFailValidationTokenLimit) = (batchRefuseCreates, batchFailValidationTokenLimit)
        (settings.outputInvalidRate, settings.outputTruncatedRate) = (outputInvalidRate, outputTruncatedRate)
        return settings
    }

    func validate() throws {
        if let (knob, message) = settings.problem { throw ValidationError("\(knob.option) \(message)") }
    }

    func run() async throws {
        var configuration = EmulatorConfiguration.standalone(environment: ProcessInfo.processInfo.environment)
        configuration.port = port
        configuration.apply(settings)
        let emulator = try await Emulator.start(configuration)
        print(emulator.banner)
        try await emulator.wait()
    }
}
