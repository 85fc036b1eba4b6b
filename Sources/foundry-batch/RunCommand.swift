import ArgumentParser
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
            2 bad job or input, 3 stopped (rows stay pending), 4 storage failed after sending, 75 batches still \
            running (--no-wait), 130 interrupted.
            """
    )

    @OptionGroup var options: JobOptions

    @Option(name: .customLong("input"), help: "An input file instead of the job's input: (repeatable).")
    var inputs: [String] = []

    @Option(help: "The results file (default: the job's output:).")
    var output: String?

    @Option(help: "Write Prometheus metrics here every 10 s and at the end (default: the job's metrics_file:).")
    var metricsFile: String?

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

    @Flag(help: "Write invalid input lines to <output>.rejects.jsonl and load the rest (as load --skip-invalid).")
    var skipInvalid = false

    @Flag(help: "engine: batch or auto: submit, poll once, export what is done; exit 75 while batches run.")
    var noWait = false

    func validate() throws {
        if let concurrency, !(1...JobFile.Limits.maxConcurrency).contains(concurrency) {
            throw ValidationError("--concurrency must be from 1 to \(JobFile.Limits.maxConcurrency)")
        }
        if let maxAttempts, !(1...JobFile.Limits.maxAttempts).contains(maxAttempts) {
            throw ValidationError("--max-attempts must be from 1 to \(JobFile.Limits.maxAttempts)")
        }
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
        let job = try JobFile.load(path: options.job)
        let started = Date()
        var overrides = options.overrides(inputs: inputs, output: output)
        (overrides.concurrency, overrides.maxAttempts, overrides.metricsFile) = (concurrency, maxAttempts, metricsFile)
        // Once the job file was read, --json always prints one object, so a cron parser
        // gets one on every exit.
        func stopped(_ error: any UserFacingError, _ session: JobSession?) async throws -> RunSummary {
            guard json else { throw error }
            let settings = session?.settings ?? (try? JobSettings.resolve(job: job, overrides: overrides))
            return await RunSummary.stopped(job: job, settings: settings, queue: session?.queue, error: error, elapsed: Date().timeIntervalSince(started))
        }
        let summary: RunSummary?
        do {
            summary = try await RunControl.$current.withValue(control) {
                try await JobSession.with(job: job, overrides: overrides) { session in
                    do { return try await send(session, control: control) } catch let error as any UserFacingError { return try await stopped(error, session) }
                }
            }
        } catch let error as any UserFacingError {
            summary = try await stopped(error, nil)
        }
        guard let summary else { return }
        print(json ? summary.json.jsonText : summary.text)
        if json, let stop = summary.stop, stop != .interrupted { Terminal.printError("stopped: \(stop.message)") }
        if summary.exitStatus != .success { throw ExitCode(summary.exitStatus.rawValue) }
    }

    /// Loads, then (unless a dry run) sends every pending row and exports; nil after a dry run.
    func send(_ session: JobSession, control: RunControl) async throws -> RunSummary? {
        let reports = try await session.load(skipInvalid: skipInvalid)
        if !json {
            for report in reports where report.inserted > 0 {
                print("\(report.path): \(report.inserted) rows queued")
            }
        }
        if dryRun {
            let report = try await session.dryRun()
            print(json ? report.json.jsonText : report.text)
            return nil
        }
        let progress: ProgressMode = noProgress ? .none : (Terminal.isInteractive ? .terminal : .log)
        return try await session.run(options: RunOptions(progress: progress, wait: !noWait), control: control)
    }
}
