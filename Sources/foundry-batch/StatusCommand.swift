import ArgumentParser
import FoundryBatch

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show how many rows are pending, running, succeeded and failed."
    )

    @OptionGroup var options: JobOptions

    @Flag(help: "Print one JSON object for scripts.")
    var json = false

    func run() async throws {
        let report = try await options.withSession { try await $0.status() }
        print(json ? report.json.jsonText : report.text)
    }
}
