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

    @Option(help: "Requests per minute per deployment (counted over 10 s windows).")
    var rpm: Int?

    @Option(help: "Tokens per minute per deployment (prompt estimate + max_tokens, charged up front).")
    var tpm: Int?

    @Option(help: "Lifetime of issued tokens, seconds.")
    var tokenTtl: Double = 3600

    @Option(help: "Latency added to every answer, milliseconds.")
    var latencyMs: Double = 0

    @Option(help: "Random extra latency, up to this many milliseconds.")
    var latencyJitterMs: Double = 0

    @Option(help: "Share of requests answered 500 or 503 (0...1).")
    var faultRate: Double = 0

    @Option(help: "Share of requests answered 429 with a 0.5 s Retry-After (0...1).")
    var throttleRate: Double = 0

    @Option(help: "Share of requests whose connection is dropped (0...1).")
    var dropRate: Double = 0

    @Option(help: "Share of requests answered only after --slow-seconds (0...1).")
    var slowRate: Double = 0

    @Option(help: "How slow a slow answer is, seconds.")
    var slowSeconds: Double = 30

    @Option(help: "Answer every request 429 with this Retry-After, seconds (quota exhausted).")
    var retryAfter: Double?

    @Option(help: "Seed of the fault dice.")
    var seed: UInt64 = 42

    func validate() throws {
        for (name, rate) in [("--fault-rate", faultRate), ("--drop-rate", dropRate), ("--slow-rate", slowRate), ("--throttle-rate", throttleRate)] where !(0...1).contains(rate) {
            throw ValidationError("\(name) is a share between 0 and 1")
        }
        let durations: [(String, Double?, Double)] = [
            ("--token-ttl", tokenTtl, 86_400), ("--latency-ms", latencyMs, 600_000), ("--latency-jitter-ms", latencyJitterMs, 600_000),
            ("--slow-seconds", slowSeconds, 86_400), ("--retry-after", retryAfter, 86_400),
        ]
        for (name, value, maximum) in durations {
            if let value, !(0...maximum).contains(value) { throw ValidationError("\(name) must be a number from 0 to \(Int(maximum))") }
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var configuration = EmulatorConfiguration.demo(secret: environment["AZURE_CLIENT_SECRET"] ?? UUID().uuidString)
        configuration.port = port
        if let key = environment["AZURE_OPENAI_API_KEY"] { configuration.apiKeys = [key] }
        if let header = environment["IDENTITY_HEADER"] { configuration.identityHeader = header }
        configuration.requestsPerMinute = rpm
        configuration.tokensPerMinute = tpm
        configuration.tokenTTL = tokenTtl
        configuration.latencyMs = latencyMs
        configuration.latencyJitterMs = latencyJitterMs
        configuration.faultRate = faultRate
        configuration.throttleRate = throttleRate
        configuration.dropRate = dropRate
        configuration.slowRate = slowRate
        configuration.slowSeconds = slowSeconds
        configuration.fixedRetryAfter = retryAfter
        configuration.seed = seed
        let emulator = try await Emulator.start(configuration)
        print(
            """
            Foundry emulator on \(emulator.baseURL)
              Foundry endpoint:     \(emulator.baseURL)  (deployments: \(configuration.deployments.joined(separator: ", ")))
              Entra authority host: \(emulator.baseURL)  tenant \(EmulatorConfiguration.demoTenantID), client \(EmulatorConfiguration.demoClientID)
              client secret:        \(environment["AZURE_CLIENT_SECRET"] == nil ? "none accepted (set AZURE_CLIENT_SECRET before starting)" : "the value of AZURE_CLIENT_SECRET")
              stats:                \(emulator.baseURL)/emulator/stats
            Press Ctrl-C to stop.
            """
        )
        try await emulator.wait()
    }
}
