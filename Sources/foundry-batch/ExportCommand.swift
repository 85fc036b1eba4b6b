import ArgumentParser
import FoundryBatch

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the results and errors files from the state database."
    )

    @OptionGroup var options: JobOptions

    @Option(help: "The results file (default: the job's output:).")
    var output: String?

    @Option(help: "The errors file (default: the job's errors:).")
    var errors: String?

    func run() async throws {
        let report = try await options.withSession(output: output, errors: errors) { try await $0.export() }
        print("\(report.succeeded) results -> \(report.output)\n\(report.failed) errors -> \(report.errors)")
    }
}
