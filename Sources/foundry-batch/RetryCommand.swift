import ArgumentParser
import FoundryBatch

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Put failed rows back in the queue for the next run.",
        discussion: "With no filter every failed row is put back; filters of either kind are combined with OR."
    )

    @OptionGroup var options: JobOptions

    @Option(name: .customLong("status"), help: "Only rows whose last HTTP status was CODE (repeatable).")
    var statusCodes: [Int] = []

    @Option(name: .customLong("code"), help: "Only rows whose error code was ERROR_CODE, e.g. content_filter (repeatable).")
    var errorCodes: [String] = []

    func run() async throws {
        let filter = RequeueFilter(statusCodes: statusCodes, errorCodes: errorCodes)
        let count = try await options.withSession { try await $0.requeue(filter) }
        print("\(count) failed rows queued again; run the job to send them")
    }
}
