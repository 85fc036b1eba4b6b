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
        let job = try JobFile.load(path: options.job)
        let (reports, rejects) = try await JobSession.with(job: job, overrides: options.overrides(inputs: inputs)) { session in
            (try await session.load(skipInvalid: skipInvalid), session.paths.rejects)
        }
        for report in reports {
            var line = "\(report.path): \(report.lines) lines, \(report.inserted) rows queued, \(report.unchanged) already queued"
            if report.rejected > 0 { line += ", \(report.rejected) rejected (see \(rejects))" }
            print(line)
        }
    }
}
