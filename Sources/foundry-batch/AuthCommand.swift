import ArgumentParser
import FoundryBatch
import Foundation

struct AuthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auth",
        abstract: "Sign in with the job's credential and show who answered; never the token.",
        discussion: "Prints which credential answered, when its token expires, and the tenant and app the token names."
    )

    @Argument(help: "The job file (YAML).")
    var job: String

    func run() async throws {
        let description = try await ServiceSession.with(job: try JobFile.load(path: job), concurrency: 1) { service in
            try await AuthReport.describe(service.target)
        }
        print(description)
    }
}
