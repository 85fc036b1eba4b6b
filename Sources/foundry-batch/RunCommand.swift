import ArgumentParser
import FoundryBatch

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load the inputs, send every pending row, and write the results.",
        discussion: "Run it again after a failure or a crash: it resumes where it stopped and never sends a finished row again."
    )

    @OptionGroup var options: JobOptions

    @Option(name: .customLong("input"), help: "An input file instead of the job's input: (repeatable).")
    var inputs: [String] = []

    @Option(help: "The results file (default: the job's output:).")
    var output: String?

    func run() async throws {
        let context = try options.open(inputs: inputs, output: output)
        _ = try context.load()
        let report = try context.export()
        print("\(report.succeeded) results -> \(report.output)\n\(report.failed) errors -> \(report.errors)")
    }
}
