import ArgumentParser
import FoundryBatch

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML page about the job: totals, variants, targets, charts, errors, answers side by side."
    )

    @OptionGroup var options: JobOptions

    @Option(help: "The HTML file (default: beside the results file, out/r.jsonl -> out/r.report.html).")
    var output: String?

    func run() async throws {
        let written = try await options.withSession { try await $0.report(to: output) }
        let compared = written.compared > 0 ? ", \(written.compared) rows side by side" : ""
        print("report of \(written.rows) rows\(compared) -> \(written.path) (\(written.bytes / 1024 + 1) KiB)")
    }
}
