import FoundryAuth
import Foundation

/// Stops a run from outside (signals) or inside (a fatal condition), once.
public actor RunControl {
    public private(set) var reason: StopReason?
    /// The run the current task works for: a PostgreSQL queue stops waiting for a database
    /// that is away once its run was interrupted.
    @TaskLocal public static var current: RunControl?
    var waiters: [CheckedContinuation<Void, Never>] = []
    var workerTasks: [Task<Void, Never>] = []
    var cancelled = false

    public init() {}

    /// Asks the run to stop; the first reason wins.
    ///
    /// A signal after a stop (a second Ctrl-C, or one after a fatal stop) cancels what is
    /// still in flight at once: the user wants the process gone now.
    public func stop(_ reason: StopReason) {
        guard self.reason == nil else {
            if reason == .interrupted { cancelWorkers() }
            return
        }
        self.reason = reason
        for waiter in waiters { waiter.resume() }
        waiters = []
    }

    /// Returns when the run is stopped, or when the waiting task is cancelled (the run ended
    /// without a stop), so that no waiter outlives its run.
    func waitForStop() async {
        if reason != nil { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled { continuation.resume() } else { waiters.append(continuation) }
            }
        } onCancel: {
            Task { await self.releaseWaiters() }
        }
    }

    func releaseWaiters() {
        for waiter in waiters { waiter.resume() }
        waiters = []
    }

    /// Registers the task running the workers, so an interrupt can cancel in-flight requests.
    func register(_ task: Task<Void, Never>) {
        if cancelled { task.cancel() }
        workerTasks.append(task)
    }

    func cancelWorkers() {
        cancelled = true
        for task in workerTasks { task.cancel() }
    }
}

/// Counters and the token budget of one run, shared by its workers.
actor RunState {
    private(set) var counters = RunCounters()
    let budget: Int?
    var spent: Int
    var reserved = 0

    init(budget: Int?, spent: Int) {
        self.budget = budget
        self.spent = spent
    }

    /// When each row throttled in this run got its first 429 since its last other answer.
    var throttledSince: [Int64: Date] = [:]

    /// Reserves a request's estimate; returns the budget when it would be passed.
    ///
    /// Sums saturate: an estimate or a usage count near `Int.max` (a service's numbers are
    /// input too) stops at the budget instead of overflowing.
    func reserve(_ estimate: Int) -> Int? {
        if let budget, Bounded.add(Bounded.add(spent, reserved), estimate) > budget { return budget }
        reserved = Bounded.add(reserved, estimate)
        return nil
    }

    func release(_ estimate: Int) { reserved = max(0, reserved - estimate) }

    /// Seconds `seq` has been throttled without another answer in between.
    func throttled(_ seq: Int64, now: Date) -> TimeInterval {
        let first = throttledSince[seq] ?? now
        throttledSince[seq] = first
        return now.timeIntervalSince(first)
    }

    func settle(_ estimate: Int, seq: Int64, outcome: RowOutcome) {
        release(estimate)
        switch outcome {
        case .succeeded(let response):
            throttledSince[seq] = nil
            counters.succeeded += 1
            counters.promptTokens = Bounded.add(counters.promptTokens, response.promptTokens ?? 0)
            counters.completionTokens = Bounded.add(counters.completionTokens, response.completionTokens ?? 0)
            spent = Bounded.add(spent, Bounded.add(response.promptTokens ?? 0, response.completionTokens ?? 0))
        case .failed:
            throttledSince[seq] = nil
            counters.failed += 1
        case .retry(_, _, _, let countsAsAttempt):
            if countsAsAttempt { throttledSince[seq] = nil }
        }
    }

    /// Counts a request as it leaves; a retry when `retry` or when `seq` was throttled before.
    func countRequest(seq: Int64, retry: Bool) {
        counters.requests += 1
        if retry || throttledSince[seq] != nil { counters.retries += 1 }
    }

    func countThrottled() { counters.throttled += 1 }

    /// Forgets `seq`'s throttle clock: its target was parked, and the next one starts afresh.
    func forgetThrottle(_ seq: Int64) { throttledSince[seq] = nil }
}
