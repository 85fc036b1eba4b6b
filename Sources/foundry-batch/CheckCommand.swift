import ArgumentParser
import FoundryBatch

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Sign in to every target, list its deployments and send one 1-token request per deployment the rows use.",
        discussion: "One line per target and deployment: ok, or what is wrong and the fix. Exit 0 when all are ok, 3 otherwise. Sends nothing else."
    )

    @OptionGroup var options: JobOptions

    @Flag(help: "Print one JSON object for scripts.")
    var json = false

    func run() async throws {
        let report: CheckReport
        do {
            report = try await options.withSession { try await $0.check() }
        } catch let error as any UserFacingError where json {
            // A script gets one object on every exit, a credential that is not set up too.
            print(JSONValue.object([("job", .string(options.job)), ("ok", .bool(false)), ("error", .string(error.description))]).jsonText)
            throw ExitCode(error.exitStatus.rawValue)
        }
        print(json ? report.json.jsonText : report.text)
        if report.exitStatus != .success { throw ExitCode(report.exitStatus.rawValue) }
    }
}
