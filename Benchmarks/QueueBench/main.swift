// foundry-batch-bench: loads a job's input into its state and times claim+complete of every
// row by WORKERS workers (QueueThroughput), with no service in between.
// Usage: foundry-batch-bench <job.yaml> [WORKERS=64]
import FoundryBatch
import Foundation

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: foundry-batch-bench <job.yaml> [WORKERS]\n".utf8))
    exit(2)
}
let workers = arguments.count > 2 ? Int(arguments[2]) ?? 64 : 64
do {
    let job = try JobFile.load(path: arguments[1])
    try await JobSession.with(job: job) { session in
        let clock = ContinuousClock(), started = clock.now
        let reports = try await session.load()
        let loaded = reports.reduce(0) { $0 + $1.inserted }
        print("load: \(loaded) rows in \(clock.now - started)")
        let figure = try await QueueThroughput.measure(queue: session.queue, workers: workers)
        print(String(format: "claim+complete: %d rows in %.2f s, %.0f rows/s (%d workers)", figure.rows, figure.seconds, figure.rowsPerSecond, workers))
    }
} catch {
    FileHandle.standardError.write(Data("foundry-batch-bench: \(error)\n".utf8))
    exit(1)
}
