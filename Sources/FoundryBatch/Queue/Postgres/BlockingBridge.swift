import Foundation
import Synchronization

/// Lets synchronous code that the queue protocol calls back (a load's body, an export's
/// writer) drive an asynchronous database: the sync code runs on a thread of its own and
/// blocks there, never on a thread of Swift's cooperative pool, while each database call
/// runs as a task.
enum BlockingBridge {
    /// A caller's closure carried into `@Sendable` work.
    ///
    /// `@unchecked Sendable`: the closure is only called by that work, one call at a time,
    /// and the work ends before ``withBody(_:_:)`` returns, so the closure never outlives
    /// its caller's scope nor runs in two places at once.
    struct Borrowed<Input, Output>: @unchecked Sendable {
        let value: (Input) throws -> Output
    }

    /// Runs `work` with `body` made carriable (it does not escape: `work` is awaited).
    static func withBody<Input, Output, T>(
        _ body: (Input) throws -> Output, _ work: (Borrowed<Input, Output>) async throws -> T
    ) async throws -> T {
        try await withoutActuallyEscaping(body) { escapable in try await work(Borrowed(value: escapable)) }
    }

    /// Runs `work` on a new thread and waits for it without blocking the caller's thread.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Runs `work` as a task and blocks this thread until it ends; only for a thread that
    /// ``onThread(_:)`` started.
    static func wait<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome<T>()
        Task {
            do { outcome.set(.success(try await work())) } catch { outcome.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try outcome.get()
    }

    final class Outcome<T: Sendable>: Sendable {
        let result = Mutex<Result<T, any Error>?>(nil)
        func set(_ value: Result<T, any Error>) { result.withLock { $0 = value } }
        func get() throws -> T {
            guard let value = result.withLock({ $0 }) else { throw CancellationError() }
            return try value.get()
        }
    }
}
