import Foundation

/// Claims and completes every due row of a queue the way a run does, with no service in
/// between: what `Benchmarks/queue.sh` times on each backend.
///
/// `workers` tasks take rows from one ``RowSource`` (claims of up to 256 rows, as a run's)
/// and commit each row through one ``CompletionWriter`` (group commits, each worker waiting
/// for its own), so the figure is the queue's ceiling for a run of that concurrency.
public enum QueueThroughput {
    /// Rows completed and how long it took.
    public struct Figure: Sendable {
        public var rows: Int
        public var seconds: Double
        public var rowsPerSecond: Double { seconds > 0 ? Double(rows) / seconds : 0 }
    }

    /// Completes every pending row of `queue` as succeeded with a small answer.
    public static func measure(queue: any RowQueue, workers: Int) async throws -> Figure {
        let source = RowSource(queue: queue, owner: LeaseOwner.make(), leaseDuration: 60, batchSize: min(max(workers, 1), 256))
        let writer = CompletionWriter(queue: queue)
        let clock = ContinuousClock(), started = clock.now
        let rows = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<max(workers, 1) {
                group.addTask {
                    var done = 0
                    while let row = try await source.next() {
                        let record = ResponseRecord(
                            statusCode: 200, requestID: "bench", clientRequestID: UUID().uuidString.lowercased(),
                            body: #"{"choices":[{"message":{"content":"ok"}}]}"#, promptTokens: 12, completionTokens: 2, totalTokens: 14, latencyMs: 0
                        )
                        _ = try await writer.commit(Completion(seq: row.seq, owner: source.owner, outcome: .succeeded(record)))
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = clock.now - started
        return Figure(rows: rows, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}
