import ArgumentParser
import FoundryBatch
import CMallocTuning
import Foundation

@main
struct FoundryBatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "foundry-batch",
        abstract: "Run bulk LLM inference from JSONL files against Microsoft Foundry (Azure OpenAI).",
        discussion: """
            Exit codes: 0 every row succeeded; 1 some rows failed (see the errors file); 2 bad usage, \
            job file or input (nothing was sent); 3 stopped by a condition every row would hit (rows stay \
            pending, rerun later); 4 storage failed after sending (answers are safe in the state database); \
            75 batches still run at the provider (run --no-wait; rerun to collect); 130 interrupted (rerun to resume).
            """,
        subcommands: [RunCommand.self, LoadCommand.self, StatusCommand.self, RetryCommand.self, ExportCommand.self, CancelCommand.self, CheckCommand.self, ReportCommand.self, StateCommand.self, AuthCommand.self,
            EmulatorCommand.self,
        ]
    )

    /// Parses, runs, and maps every failure to the contract's exit codes, never a stack trace.
    static func main() async {
        // glibc gives each thread that allocates an arena of its own, up to eight per core;
        // with thousands of requests in flight their fragments cost over 10 MB of memory.
        // Two arenas keep that down, for no measurable loss of speed on the run's few threads.
        foundry_batch_limit_malloc_arenas(2)
        LogSetup.bootstrap()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as any UserFacingError {
            Terminal.printError("error: \(error.description)")
            Foundation.exit(error.exitStatus.rawValue)
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            Terminal.printError(fullMessage(for: error))
            Foundation.exit(ExitStatus.badInput.rawValue)
        }
    }
}

/// The options every job command takes.
struct JobOptions: ParsableArguments {
    @Argument(help: "The job file (YAML).")
    var job: String

    @Option(help: "The day {date} stands for in the job's paths (YYYY-MM-DD; default today, local time).")
    var date: String?

    @Option(help: "The state database (default: the job's state:).")
    var state: String?

    func overrides(inputs: [String] = [], output: String? = nil, errors: String? = nil) -> JobOverrides {
        JobOverrides(date: date, inputs: inputs, output: output, errors: errors, state: state)
    }

    /// Opens the job's session with these options, runs `body`, and closes it.
    func withSession<T: Sendable>(output: String? = nil, errors: String? = nil, _ body: (JobSession) async throws -> T) async throws -> T {
        try await JobSession.with(job: JobFile.load(path: job), overrides: overrides(output: output, errors: errors), body)
    }
}

enum Terminal {
    static func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    static var isInteractive: Bool { isatty(STDERR_FILENO) != 0 }
}
