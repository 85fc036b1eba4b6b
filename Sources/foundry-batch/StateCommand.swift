import ArgumentParser
import FoundryBatch

struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Work on a job's state database.",
        subcommands: [Copy.self]
    )

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "copy",
            abstract: "Copy a job's SQLite state (rows, attempts, loads, batches) into a new PostgreSQL schema."
        )

        @OptionGroup var options: JobOptions

        @Option(name: .customLong("to"), help: "postgresql://USER@HOST:PORT/DATABASE[?schema=...&sslmode=...] (the password from PGPASSWORD or ~/.pgpass).")
        var url: String

        func run() async throws {
            let report = try await options.withSession { try await $0.copyState(to: url) }
            print(report.text)
        }
    }
}
