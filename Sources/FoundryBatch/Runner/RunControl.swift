/// Stops a run from outside (signals) or inside (a fatal condition), once.
public actor RunControl {
    public private(set) var reason: StopReason?
    var waiters: [CheckedContinuation<Void, Never>] = []
    var workerTasks: [Task<Void, Never>] = []
    var cancelled = false

    public init() {}

    /// Asks the run to stop; the first reason wins.
    public func stop(_ reason: StopReason) {
        guard self.reason == nil else { return }
        self.reason = reason
        for waiter in waiters { waiter.resume() }
        waiters = []
    }

    func waitForStop() async {
        if reason != nil { return }
        await withCheckedContinuation { waiters.append($0) }
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

    /// Reserves a request's estimate; returns the budget when it would be passed.
    func reserve(_ estimate: Int) -> Int? {
        if let budget, spent + reserved + estimate > budget { return budget }
        reserved += estimate
        return nil
    }

    func release(_ estimate: Int) { reserved -= estimate }

    func settle(_ estimate: Int, outcome: RowOutcome) {
        reserved -= estimate
        switch outcome {
        case .succeeded(let response):
            counters.succeeded += 1
            counters.promptTokens += response.promptTokens ?? 0
            counters.completionTokens += response.completionTokens ?? 0
            spent += (response.promptTokens ?? 0) + (response.completionTokens ?? 0)
        case .failed:
            counters.failed += 1
        case .retry:
            break
        }
    }

    func countRequest() { counters.requests += 1 }

    func countRetry(throttled: Bool) {
        counters.retries += 1
        if throttled { counters.throttled += 1 }
    }
}
