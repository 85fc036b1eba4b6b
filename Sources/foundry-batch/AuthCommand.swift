import ArgumentParser
import AsyncHTTPClient
import FoundryAuth
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
        let jobFile = try JobFile.load(path: job)
        let http = HTTPClient.forRun(concurrency: 1)
        do {
            let endpoint = try await ServiceEndpoint.open(job: jobFile, http: http)
            let description: String
            do {
                description = try await AuthReport.describe(endpoint.target)
            } catch {
                await endpoint.close()
                throw error
            }
            await endpoint.close()
            try? await http.shutdown()
            print(description)
        } catch {
            try? await http.shutdown()
            throw error
        }
    }
}
