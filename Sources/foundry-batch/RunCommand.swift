import ArgumentParser
import AsyncHTTPClient
import FoundryBatch
import Foundation
import UnixSignals

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load the inputs, send every pending row, and write the results.",
        discussion: """
            Run it again after a failure, a crash or an interrupt: it resumes where it stopped and \
            never sends a finished row again. Exit codes: 0 all rows succeeded, 1 some failed, \
            2 bad job or input, 3 stopped (rows stay pending), 130 interrupted.
            """
    )

    @OptionGroup var options: JobOptions

    @Option(name: .customLong("input"), help: "An input file instead of the job's input: (repeatable).")
    var inputs: [String] = []

    @Option(help: "The results file (default: the job's output:).")
    var output: String?

    @Option(help: "Workers (default: the job's limits.concurrency).")
    var concurrency: Int?

    @Option(help: "Tries per row before it fails (default: the job's limits.max_attempts).")
    var maxAttempts: Int?

    @Flag(help: "No progress line or progress log.")
    var noProgress = false

    @Flag(help: "Print one JSON object with the run's figures on standard output.")
    var json = false

    @Flag(help: "Load and estimate rows, tokens and cost; send nothing.")
    var dryRun = false

    func validate() throws {
        if let concurrency, concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
        if let maxAttempts, maxAttempts < 1 { throw ValidationError("--max-attempts must be at least 1") }
    }

    func run() async throws {
        // Trap signals before anything else, so an early Ctrl-C still releases rows cleanly.
        let control = RunControl()
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                await control.stop(.interrupted)
            }
        }
        defer { signals.cancel() }
        let context = try options.open(inputs: inputs, output: output)
        let reports = try context.load()
        if !json {
            for report in reports where report.inserted > 0 {
                print("\(report.path): \(report.inserted) rows queued")
            }
        }
        if dryRun {
            let report = try await DryRunReport.read(context)
            print(json ? report.json.jsonText : report.text)
            return
        }
        var runOptions = RunOptions(limits: context.job.limits)
        if let concurrency { runOptions.concurrency = concurrency }
        if let maxAttempts { runOptions.maxAttempts = maxAttempts }
        runOptions.progress = noProgress ? .none : (Terminal.isInteractive ? .terminal : .log)

        let http = HTTPClient.forRun(concurrency: runOptions.concurrency)
        let summary: RunSummary
        do {
            let endpoint = try await ServiceEndpoint.open(job: context.job, http: http)
            do {
                summary = try await BatchRun.execute(context: context, target: endpoint.target, http: http, options: runOptions, control: control)
                await endpoint.close()
            } catch {
                await endpoint.close()
                throw error
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try? await http.shutdown()
        print(json ? summary.json.jsonText : summary.text)
        if json, case .fatal(let condition) = summary.stop { Terminal.printError("stopped: \(condition.description)") }
        if summary.exitStatus != .success { throw ExitCode(summary.exitStatus.rawValue) }
    }
}
