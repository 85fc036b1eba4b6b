import FoundryAuth
import Foundation
import NIOHTTP1

/// How long the service asked us to wait, from every place Azure and OpenAI put it.
///
/// In order: `retry-after-ms`, `x-ms-retry-after-ms`, `retry-after` (seconds or an
/// HTTP-date), then the "Please retry after N seconds" text of Azure's 429 body.
///
/// A value is used only when it is a finite, non-negative number: `inf`, `nan`, `-1` or
/// text are ignored as if absent, and a huge value is clamped (``Bounded/maxSeconds``), so
/// the caller can compare it with `limits.max_retry_wait` and never overflows.
public enum RetryAfter {
    public static func delay(headers: HTTPHeaders, body: String?, now: Date = Date()) -> TimeInterval? {
        func header(_ name: String) -> String? { headers.first(name: name)?.trimmingCharacters(in: .whitespaces) }
        for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let value = Bounded.seconds(header(name).flatMap(Double.init)) { return value / 1000 }
        }
        if let value = header("retry-after") {
            if let seconds = Bounded.seconds(Double(value)) { return seconds }
            if let date = httpDate(value) { return Bounded.seconds(max(0, date.timeIntervalSince(now))) }
        }
        if let body { return bodyDelay(body) }
        return nil
    }

    /// "... Please retry after 6 seconds. ..." / "Try again in 20s" / "retry after 1.5 seconds".
    static func bodyDelay(_ body: String) -> TimeInterval? {
        let lower = body.lowercased()
        for marker in ["retry after ", "try again in "] {
            guard let range = lower.range(of: marker) else { continue }
            let rest = lower[range.upperBound...]
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Bounded.seconds(Double(number)) else { continue }
            let unit = rest.dropFirst(number.count).trimmingCharacters(in: .whitespaces)
            if unit.hasPrefix("ms") || unit.hasPrefix("millisecond") { return value / 1000 }
            return value
        }
        return nil
    }

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }
}
