import ArgumentParser
import FoundryBatch

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel the job's batches at the provider, keeping what they finished.",
        discussion: "Waits until each batch has stopped and its answers are recorded; the rows it did not finish return to pending."
    )

    @OptionGroup var options: JobOptions

    func run() async throws {
        let (cancelled, counts) = try await options.withSession { session in
            (try await session.cancelBatches(control: RunControl()), try await session.queue.counts().job)
        }
        print("\(cancelled) batch\(cancelled == 1 ? "" : "es") cancelled; \(counts.succeeded) rows succeeded, \(counts.failed) failed, \(counts.pending + counts.running) pending")
    }
}
