import ArgumentParser
import FoundryBatch

struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Queue the job's input lines without sending anything.",
        discussion: """
            Loading is all-or-nothing per file: a bad line fails the file with file:line and adds \
            nothing, unless --skip-invalid. Loading the same file again adds nothing.
            """
    )

    @OptionGroup var options: JobOptions

    @Option(name: .customLong("input"), help: "An input file instead of the job's input: (repeatable).")
    var inputs: [String] = []

    @Flag(help: "Write invalid lines to <output>.rejects.jsonl and load the rest.")
    var skipInvalid = false

    func run() async throws {
        let context = try options.open(inputs: inputs)
        let reports = try context.load(skipInvalid: skipInvalid)
        for report in reports {
            var line = "\(report.path): \(report.lines) lines, \(report.inserted) rows queued, \(report.unchanged) already queued"
            if report.rejected > 0 { line += ", \(report.rejected) rejected (see \(context.paths.rejects))" }
            print(line)
        }
    }
}
