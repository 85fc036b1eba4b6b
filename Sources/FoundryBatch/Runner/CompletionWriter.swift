import Foundation

/// Commits outcomes in groups: while one transaction runs, the next group gathers.
///
/// A worker's ``commit(_:)`` returns only once its outcome is durable, so at any moment
/// at most the rows in flight (one per worker) can be lost to a crash and sent again.
actor CompletionWriter {
    let queue: any RowQueue
    var waiting: [(Completion, CheckedContinuation<Bool, any Error>)] = []
    var flushing = false

    init(queue: any RowQueue) {
        self.queue = queue
    }

    /// Commits one outcome; returns false when the lease was lost and another process owns the row.
    func commit(_ completion: Completion) async throws -> Bool {
        try await withCheckedThrowingContinuation { continuation in
            waiting.append((completion, continuation))
            if !flushing {
                flushing = true
                Task { await flush() }
            }
        }
    }

    func flush() async {
        while !waiting.isEmpty {
            let batch = waiting
            waiting = []
            do {
                try await queue.complete(batch.map(\.0), now: Date())
                // complete() applies each completion on its own; a lost lease only skips that row.
                for (_, continuation) in batch { continuation.resume(returning: true) }
            } catch {
                for (_, continuation) in batch { continuation.resume(throwing: error) }
            }
        }
        flushing = false
    }
}

/// Hands claimed rows to workers, claiming a batch at a time so SQLite is not hit per row.
actor RowSource {
    let queue: any RowQueue
    let owner: String
    let leaseDuration: TimeInterval
    let batchSize: Int
    var buffered: [ClaimedRow] = []
    var refill: Task<[ClaimedRow], any Error>?
    var closed = false

    init(queue: any RowQueue, owner: String, leaseDuration: TimeInterval, batchSize: Int) {
        self.queue = queue
        self.owner = owner
        self.leaseDuration = leaseDuration
        self.batchSize = batchSize
    }

    /// The next due row for this process, or nil when none is due now.
    ///
    /// One claim runs at a time; every caller waiting on it resumes, and the first to
    /// resume moves its rows into the buffer. (Awaiting a finished task does not suspend,
    /// so a waiter that merely looped would spin on the actor and starve the claimer.)
    func next() async throws -> ClaimedRow? {
        while !closed {
            if !buffered.isEmpty { return buffered.removeFirst() }
            let task: Task<[ClaimedRow], any Error>
            if let running = refill {
                task = running
            } else {
                let queue = self.queue, owner = self.owner, lease = self.leaseDuration, size = self.batchSize
                task = Task { () throws -> [ClaimedRow] in
                    let now = Date()
                    return try await queue.claim(owner: owner, limit: size, leaseUntil: now.addingTimeInterval(lease), now: now)
                }
                refill = task
            }
            let rows: [ClaimedRow]
            do {
                rows = try await task.value
            } catch {
                if refill == task { refill = nil }
                throw error
            }
            if refill == task {
                refill = nil
                if rows.isEmpty { return nil }
                buffered.append(contentsOf: rows)
            } else if buffered.isEmpty, rows.isEmpty {
                return nil
            }
        }
        return nil
    }

    /// Stops handing out rows.
    func close() {
        closed = true
        buffered = []
    }
}
