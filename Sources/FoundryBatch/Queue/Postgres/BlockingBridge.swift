import Foundation
import Synchronization

/// Lets synchronous code that the queue protocol calls back (a load's body, an export's
/// writer) drive an asynchronous database: the sync code runs on a thread of its own and
/// blocks there, never on a thread of Swift's cooperative pool, while each database call
/// runs as a task.
enum BlockingBridge {
    /// A caller's closure carried into `@Sendable` work.
    ///
    /// `@unchecked Sendable`: the closure is only called by that work, one call at a time
    /// (the lock orders the hand-over). ``withBody(_:_:)`` takes the closure back out before it
    /// returns, so whatever still holds the box afterwards (a finished task, a thread object
    /// not yet freed) holds no closure, and the closure never outlives its caller's scope.
    final class Borrowed<Input, Output>: @unchecked Sendable {
        private let lock = NSLock()
        private var closure: ((Input) throws -> Output)?

        init(_ closure: @escaping (Input) throws -> Output) { self.closure = closure }

        func value(_ input: Input) throws -> Output {
            lock.lock()
            let closure = self.closure
            lock.unlock()
            guard let closure else { throw CancellationError() }
            return try closure(input)
        }

        func release() {
            lock.lock()
            closure = nil
            lock.unlock()
        }
    }

    /// Runs `work` with `body` made carriable (it does not escape: `work` is awaited, and the
    /// box lets go of `body` before this returns).
    static func withBody<Input, Output, T>(
        _ body: (Input) throws -> Output, _ work: (Borrowed<Input, Output>) async throws -> T
    ) async throws -> T {
        try await withoutActuallyEscaping(body) { escapable in
            let borrowed = Borrowed(escapable)
            defer { borrowed.release() }
            return try await work(borrowed)
        }
    }

    /// Holds a thread's work until the thread takes it, so the thread object keeps no reference.
    final class Handoff<T: Sendable>: @unchecked Sendable {
        private let lock = NSLock()
        private var work: (@Sendable () throws -> T)?
        init(_ work: @escaping @Sendable () throws -> T) { self.work = work }
        func take() -> (@Sendable () throws -> T)? {
            lock.lock()
            defer { lock.unlock() }
            let taken = work
            work = nil
            return taken
        }
    }

    /// Runs `work` on a new thread and waits for it without blocking the caller's thread.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let handoff = Handoff(work)
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                // The work is let go of before the caller resumes.
                let result: Result<T, any Error>
                do {
                    guard let work = handoff.take() else { throw CancellationError() }
                    result = .success(try work())
                } catch {
                    result = .failure(error)
                }
                continuation.resume(with: result)
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
