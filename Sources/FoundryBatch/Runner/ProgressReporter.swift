import Foundation
import Logging

/// Where progress goes while a run works.
public enum ProgressMode: Sendable, Equatable {
    /// A live line on the terminal (standard error), redrawn twice a second.
    case terminal
    /// One log line every 10 seconds (cron, CI, pipes).
    case log
    case none
}

/// Shows done/total, requests/s, tokens/min, 429s, retries and an ETA.
actor ProgressReporter {
    let mode: ProgressMode
    let queue: any RowQueue
    let state: RunState
    let logger: Logger
    /// The run's targets, for the live count of a job with `targets:`.
    let pool: TargetPool?
    var task: Task<Void, Never>?
    var total = 0
    var doneAtStart = 0
    let started = Date()

    init(mode: ProgressMode, queue: any RowQueue, state: RunState, logger: Logger, pool: TargetPool? = nil) {
        self.mode = mode
        self.pool = pool
        self.queue = queue
        self.state = state
        self.logger = logger
    }

    func start() async {
        guard mode != .none, let counts = try? await queue.counts().job else { return }
        total = counts.total
        doneAtStart = counts.succeeded + counts.failed
        let interval: Duration = mode == .terminal ? .milliseconds(500) : .seconds(10)
        task = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { return }
                await self.report()
            }
        }
    }

    func line() async -> String {
        let counters = await state.counters
        let elapsed = max(Date().timeIntervalSince(started), 0.001)
        let done = doneAtStart + counters.succeeded + counters.failed
        let rowsPerSecond = Double(counters.succeeded + counters.failed) / elapsed
        let remaining = max(total - done, 0)
        let eta = rowsPerSecond > 0 ? Self.duration(Double(remaining) / rowsPerSecond) : "?"
        let tokensPerMinute = Double(counters.promptTokens + counters.completionTokens) / elapsed * 60
        var text = String(
            format: "%d/%d rows  %.1f req/s  %.0f tok/min  429s: %d  retries: %d  failed: %d  ETA %@",
            done, total, Double(counters.requests) / elapsed, tokensPerMinute, counters.throttled, counters.retries,
            counters.failed, eta
        )
        if let pool, pool.isPooled {
            let live = pool.liveNames(now: Date())
            text += "  targets: \(live.isEmpty ? "none" : live.joined(separator: ","))"
        }
        return text
    }

    func report() async {
        let text = await line()
        switch mode {
        case .terminal: FileHandle.standardError.write(Data(("\r\u{1B}[2K" + text).utf8))
        case .log: logger.notice("\(text)")
        case .none: break
        }
    }

    /// Stops the progress task and waits for it, so it never reads a closed queue.
    func finish() async {
        task?.cancel()
        await task?.value
        if mode == .terminal { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
    }

    static func duration(_ seconds: Double) -> String {
        // Bounded: a time from a hand-edited state must not trap the conversion.
        let whole = Int(min(max(seconds.isFinite ? seconds : 0, 0), 1e15).rounded())
        if whole >= 3600 { return "\(whole / 3600)h\(whole % 3600 / 60)m" }
        if whole >= 60 { return "\(whole / 60)m\(whole % 60)s" }
        return "\(whole)s"
    }
}
