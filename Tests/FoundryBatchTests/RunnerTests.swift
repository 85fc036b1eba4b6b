import AsyncHTTPClient
import FoundryAuth
import FoundryEmulator
import Foundation
import Testing
@testable import FoundryBatch

/// The runner against the in-process emulator.
@Suite(.timeLimit(.minutes(1))) struct RunnerTests {
    static let secret = "runner-test-secret"

    func configuration(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
        var configuration = EmulatorConfiguration.demo(secret: Self.secret)
        configuration.apiKeys = ["runner-key"]
        change(&configuration)
        return configuration
    }

    func prompts(_ count: Int, prefix: String = "p") -> String {
        (1...count).map { "{\"id\": \"\(prefix)\($0)\", \"prompt\": \"Question number \($0) of \(prefix)\"}" }.joined(separator: "\n")
    }

    /// Runs `fixture`'s rows against `emulator` and returns the summary.
    func run(
        _ fixture: Fixture, _ emulator: Emulator, bearer: Bool = false, concurrency: Int = 8, maxAttempts: Int = 8,
        control: RunControl = RunControl()
    ) async throws -> (RunSummary, HTTPClient) {
        let http = HTTPClient.forRun(concurrency: concurrency)
        let authorization: RequestAuthorization =
            bearer
            ? .bearer(
                TokenProvider(
                    credential: ClientSecretCredential(
                        tenantID: EmulatorConfiguration.demoTenantID, clientID: EmulatorConfiguration.demoClientID, secret: Self.secret,
                        authorityHost: emulator.baseURL, http: http
                    )
                )
            )
            : .apiKey("runner-key")
        let target = ServiceTarget(baseURL: emulator.baseURL, apiVersion: nil, authorization: authorization)
        var options = RunOptions(limits: fixture.job.limits)
        options.concurrency = concurrency
        options.maxAttempts = maxAttempts
        options.progress = .none
        let context = JobContext(job: fixture.job, paths: try fixture.job.resolve(), queue: fixture.queue)
        let summary = try await BatchRun.execute(context: context, target: target, http: http, options: options, control: control)
        try await http.shutdown()
        return (summary, http)
    }

    @Test func everyRowSucceedsWithItsOwnAnswer() async throws {
        let fixture = try Fixture()
        _ = try fixture.load(prompts(20))
        try await Emulator.withRunning(configuration()) { emulator in
            let (summary, _) = try await run(fixture, emulator)
            #expect(summary.exitStatus == .success)
            #expect(summary.counts.succeeded == 20)
            #expect(summary.counters.requests == 20)
        }
    }
}
