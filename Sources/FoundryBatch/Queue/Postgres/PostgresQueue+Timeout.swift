import PostgresNIO
import Synchronization

extension PostgresQueue {
    /// A database step that did not end in time: counted as a lost connection, so it is retried.
    struct Timeout: Error {}

    /// `operation`, or ``Timeout`` once `seconds` have passed and `expired()` says so.
    ///
    /// The race is unstructured on purpose: a query postgres-nio sent on a connection the
    /// server dropped can wait forever and ignores cancellation, and a task group would wait
    /// for it before returning. Here the caller resumes at the deadline; the operation is
    /// cancelled and `onTimeout` runs (closing its connection, which is what ends such a
    /// query), and whatever the operation returns after that is dropped.
    ///
    /// - Parameters:
    ///   - expired: asked at the deadline; false lets the operation run on unbounded (an
    ///     export that has its connection streams for as long as it takes).
    ///   - onTimeout: runs once, when the deadline wins.
    static func withTimeout<T: Sendable>(
        seconds: Double, expired: @escaping @Sendable () -> Bool = { true }, onTimeout: @escaping @Sendable () -> Void = {},
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withTimeout(seconds: seconds, expired: expired, onTimeout: onTimeout, race: Race<T>(), operation)
    }

    /// `operation` on `connection`, ended with ``ConnectionClosed`` the moment the connection
    /// closes (a statement postgres-nio sent on it may otherwise never answer), or with
    /// ``Timeout`` after `seconds` (closing the connection).
    ///
    /// Once the run in `control` is interrupted, the statement gets ``interruptGrace`` more:
    /// a stopping run does not wait out the whole timeout on a database that stalled.
    static func on<T: Sendable>(
        _ connection: PostgresConnection, seconds: Double, control: RunControl? = nil, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let race = Race<T>()
        connection.closeFuture.whenComplete { _ in race.end(.failure(ConnectionClosed())) }
        return try await withTimeout(
            seconds: seconds, control: control, expired: { true }, onTimeout: { Task { try? await connection.close() } }, race: race, operation
        )
    }

    /// How long a statement still waits for its answer once the run was interrupted.
    static let interruptGrace = 5.0

    /// Sleeps for `seconds`, or until ``interruptGrace`` after `control` was interrupted
    /// when that comes first; false when cancelled.
    static func sleep(_ seconds: Double, control: RunControl?) async -> Bool {
        let clock = ContinuousClock()
        var end = clock.now + .seconds(seconds)
        guard let control else { return (try? await Task.sleep(until: end, clock: clock)) != nil }
        while clock.now < end {
            // Looked at once a second: most statements end long before the first look.
            guard (try? await Task.sleep(until: min(end, clock.now + .seconds(1)), clock: clock)) != nil else { return false }
            if await control.reason == .interrupted { end = min(end, clock.now + .seconds(interruptGrace)) }
        }
        return true
    }

    /// The connection closed under a statement: counted as a lost connection, so it is retried.
    struct ConnectionClosed: Error {}

    static func withTimeout<T: Sendable>(
        seconds: Double, control: RunControl? = nil, expired: @escaping @Sendable () -> Bool, onTimeout: @escaping @Sendable () -> Void,
        race: Race<T>, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.wait(continuation)
                let work = Task {
                    do { race.end(.success(try await operation())) } catch { race.end(.failure(error)) }
                }
                let timer = Task {
                    guard await sleep(seconds, control: control), expired() else { return }
                    if race.end(.failure(Timeout())) {
                        work.cancel()
                        onTimeout()
                    }
                }
                race.attach([work, timer])
            }
        } onCancel: {
            race.end(.failure(CancellationError()))
        }
    }

    /// The first of an operation, its deadline and its caller's cancellation to end: the
    /// caller resumes once, with that outcome, and the tasks still running are cancelled.
    final class Race<T: Sendable>: Sendable {
        struct State {
            var waiting: CheckedContinuation<T, any Error>?
            var outcome: Result<T, any Error>?
            var tasks: [Task<Void, Never>] = []
        }
        let state = Mutex(State())

        /// Parks the caller; resumes it at once when the race already ended (cancelled before it began).
        func wait(_ continuation: CheckedContinuation<T, any Error>) {
            let ended = state.withLock { state -> Result<T, any Error>? in
                if state.outcome == nil { state.waiting = continuation }
                return state.outcome
            }
            if let ended { continuation.resume(with: ended) }
        }

        /// Keeps the race's tasks to cancel when it ends; cancels them now when it has.
        func attach(_ tasks: [Task<Void, Never>]) {
            let ended = state.withLock { state -> Bool in
                if state.outcome == nil { state.tasks = tasks }
                return state.outcome != nil
            }
            if ended { tasks.forEach { $0.cancel() } }
        }

        /// Ends the race with `outcome` unless it has ended; returns whether this call ended it.
        @discardableResult
        func end(_ outcome: Result<T, any Error>) -> Bool {
            let taken = state.withLock { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>])? in
                guard state.outcome == nil else { return nil }
                state.outcome = outcome
                defer { state.waiting = nil; state.tasks = [] }
                return (state.waiting, state.tasks)
            }
            guard let (waiting, tasks) = taken else { return false }
            waiting?.resume(with: outcome)
            tasks.forEach { $0.cancel() }
            return true
        }
    }

    /// The connection a step holds, so that a step out of time can have it closed.
    final class Holder: Sendable {
        let connection = Mutex<PostgresConnection?>(nil)

        func hold(_ connection: PostgresConnection) { self.connection.withLock { $0 = connection } }
        /// Whether the step has its connection (and so runs).
        var started: Bool { connection.withLock { $0 != nil } }

        /// Closes the held connection without waiting: the pool drops a closed connection.
        func close() {
            guard let connection = connection.withLock({ $0 }) else { return }
            Task { try? await connection.close() }
        }
    }

    /// Runs `body` on a connection of `pool`, giving up when none is had within `seconds`
    /// (a connect to a server that does not answer can take longer). Once `body` runs, it has
    /// all the time it needs (an export streams for as long as it takes) unless `holder` is
    /// closed by a caller's own deadline.
    static func leased<T: Sendable>(
        _ pool: PostgresPool, within seconds: Double, holder: Holder = Holder(),
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await withTimeout(seconds: seconds, expired: { !holder.started }) {
            try await pool.withConnection { connection in
                holder.hold(connection)
                // A lease granted after the deadline gave up on it: the step is being retried elsewhere.
                try Task.checkCancellation()
                return try await body(connection)
            }
        }
    }
}
