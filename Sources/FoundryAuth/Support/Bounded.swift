import Foundation
import NIOCore

/// Numbers that came from outside (a service's header or body, a job file) made safe to
/// compute with.
///
/// A service may send `retry-after: inf`, `expires_in: 1e300` or a usage count past
/// `Int.max`. Converting such a `Double` to `Int` or to a `Duration` traps; adding such
/// counts overflows. Every such conversion and sum goes through here.
public enum Bounded {
    /// The longest wait or lifetime anything here computes with: 10 years, in seconds.
    public static let maxSeconds: Double = 315_360_000

    /// `value` as seconds when it is a finite, non-negative number; nil otherwise.
    /// Values beyond ``maxSeconds`` are clamped to it.
    public static func seconds(_ value: Double?) -> Double? {
        guard let value, value.isFinite, value >= 0 else { return nil }
        return min(value, maxSeconds)
    }

    /// `seconds` as a `Duration`, clamped to `0...maxSeconds` (NaN: zero).
    public static func duration(seconds: Double) -> Duration {
        .milliseconds(milliseconds(seconds))
    }

    /// `seconds` as NIO's `TimeAmount`, clamped like ``duration(seconds:)``.
    public static func timeAmount(seconds: Double) -> TimeAmount {
        .milliseconds(milliseconds(seconds))
    }

    /// Whole milliseconds of `seconds` clamped to `0...maxSeconds`: +inf is the maximum, NaN zero.
    static func milliseconds(_ seconds: Double) -> Int64 {
        let safe = Self.seconds(seconds) ?? (seconds > 0 ? maxSeconds : 0)
        return Int64((safe * 1000).rounded(.up))
    }

    /// `value` rounded toward zero, saturating at `Int.min`/`Int.max`; NaN is 0.
    public static func int(_ value: Double) -> Int {
        guard !value.isNaN else { return 0 }
        if value >= Double(Int.max) { return Int.max }
        if value <= Double(Int.min) { return Int.min }
        return Int(value)
    }

    /// `a + b`, saturating instead of overflowing.
    public static func add(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard overflow else { return sum }
        return b > 0 ? Int.max : Int.min
    }
}

/// A deadline passed before the work finished.
public struct DeadlineExceeded: Error, Sendable {
    public init() {}
}

/// Runs `body`, cancelling it when `seconds` pass first.
///
/// One deadline covers the whole exchange: the request, the answer's head, and its body.
/// AsyncHTTPClient's own deadline ends at the head, so a server that sends headers and then
/// stalls (or drips a byte at a time) would otherwise hold the caller forever.
///
/// The timer is scheduled on `eventLoop` (the HTTP client's), which is much cheaper per
/// request than a sleeping task, and is cancelled as soon as `body` returns.
///
/// - Throws: ``DeadlineExceeded`` when time runs out; whatever `body` throws otherwise.
public func withDeadline<T: Sendable>(
    seconds: Double, on eventLoop: any EventLoop, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let timer = eventLoop.scheduleTask(in: Bounded.timeAmount(seconds: seconds)) {}
    return try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await timer.futureResult.get()
            throw DeadlineExceeded()
        }
        defer {
            timer.cancel()
            group.cancelAll()
        }
        guard let first = try await group.next() else { throw DeadlineExceeded() }
        return first
    }
}
