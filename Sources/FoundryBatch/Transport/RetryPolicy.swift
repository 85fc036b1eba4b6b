import FoundryAuth
import Foundation
import NIOHTTP1

/// A condition every row would hit: the run stops, rows stay pending (exit 3).
public struct FatalCondition: UserFacingError, Equatable {
    public var message: String
    public var exitStatus: ExitStatus { .stopped }
    public init(_ message: String) { self.message = message }
    public var description: String { message + "\nRows not yet done stay pending: fix this and run the job again." }
}

/// The one place that decides what an answer means for its row and for the run.
public enum RetryPolicy {
    public enum Verdict: Sendable, Equatable {
        case success
        /// Try the row again after `delay` (nil: back off exponentially). `throttled` for 429.
        case retry(delay: TimeInterval?, error: RowError, throttled: Bool)
        /// The row failed for good (400, content filter, 413, 422, other 4xx).
        case permanent(RowError)
        /// The service refused the credential; refresh the token once and try again.
        case unauthorized(RowError)
        /// Stop the run.
        case fatal(FatalCondition)
    }

    /// Classifies one answer, decoding its body; the runner, which has decoded it already,
    /// calls ``classify(_:body:deployment:url:now:)``. `deployment` and `url` only shape messages.
    public static func classify(_ answer: ServiceAnswer, deployment: String, url: String, now: Date = Date()) -> Verdict {
        classify(answer, body: answer.body.flatMap(ServiceBody.decode), deployment: deployment, url: url, now: now)
    }

    /// Classifies one answer whose body was decoded once by the caller.
    ///
    /// - Parameter body: ``ServiceBody/decode(_:)`` of the answer's body (nil: not a JSON
    ///   object, or no body). `deployment` and `url` only shape messages.
    public static func classify(
        _ answer: ServiceAnswer, body: ServiceBody?, deployment: String, url: String, now: Date = Date()
    ) -> Verdict {
        switch answer {
        case .timedOut:
            return .retry(delay: nil, error: RowError(code: "timeout", message: "no answer within limits.timeout"), throttled: false)
        case .connectionFailed(let reason, _):
            return .retry(delay: nil, error: RowError(code: "connection_error", message: reason), throttled: false)
        case .refused(let reason):
            return .fatal(FatalCondition("\(reason)\nCheck endpoint: in the job file."))
        case .tooLarge(let limit, _):
            return .permanent(RowError(code: "response_too_large", message: "the answer was larger than \(limit >> 20) MiB"))
        case .response(let status, let headers, let bytes, _):
            if (200..<300).contains(status) {
                if body != nil { return .success }
                // A 2xx that is not a JSON object (HTML from a proxy, a body cut short by a
                // wrong Content-Length, an empty answer) is no answer: try again.
                let text = ServiceText.printable(String(decoding: bytes.prefix(200), as: UTF8.self), limit: 120)
                return .retry(
                    delay: nil,
                    error: RowError(code: "invalid_response", message: "HTTP \(status) with a body that is not a JSON object: \(text.isEmpty ? "(empty)" : text)", statusCode: status),
                    throttled: false
                )
            }
            if (300..<400).contains(status) {
                let message = TransportSecurity.redirectRefusal(status: status, location: headers.first(name: "location"), what: "the service")
                return .permanent(RowError(code: "redirected", message: message, statusCode: status))
            }
            let text = String(decoding: bytes.prefix(4096), as: UTF8.self)
            let detail = body?.error
            // The service's words reach a terminal: no control characters, and a bounded length.
            let message = ServiceText.printable(detail?.message ?? (text.isEmpty ? "HTTP \(status)" : text), limit: 1000)
            let code = detail?.code.flatMap(ServiceText.code)
            let delay = RetryAfter.delay(headers: headers, body: detail?.message ?? text, now: now)
            let shouldRetry = headers.first(name: "x-should-retry")?.lowercased()

            if status == 401 {
                if code == "PermissionDenied" {
                    return .fatal(
                        FatalCondition(
                            "permission denied (HTTP 401 PermissionDenied): \(message)\nAssign the role \"Cognitive Services OpenAI User\" to this identity on the Foundry resource (az role assignment create --assignee <app or principal id> --role \"Cognitive Services OpenAI User\" --scope <resource id>); a new assignment takes a few minutes to apply."
                        )
                    )
                }
                return .unauthorized(RowError(code: "unauthorized", message: message, statusCode: 401))
            }
            if status == 403 {
                return .fatal(FatalCondition("the service refused access (HTTP 403): \(message)\nCheck the resource's network rules (firewall, private endpoint) and the identity's role."))
            }
            if status == 404 {
                if code == "DeploymentNotFound" {
                    return .fatal(
                        FatalCondition("deployment '\(deployment)' does not exist at \(url) (HTTP 404 DeploymentNotFound).\nCheck deployment: (or the model of the input lines) against the deployments of the resource.")
                    )
                }
                return .fatal(FatalCondition("the endpoint answered 404 for \(url): \(message)\nCheck endpoint: and api_version: in the job file."))
            }
            if status == 429, code == "insufficient_quota" || detail?.type == "insufficient_quota" {
                return .fatal(
                    FatalCondition(
                        "the service has no quota left for this account (HTTP 429 insufficient_quota): \(message)\nThis is not a rate limit that passes: check the plan, billing or quota of the account, then run the job again."
                    )
                )
            }
            let error = RowError(code: rowCode(status: status, code: code), message: message, statusCode: status)
            if shouldRetry == "false" { return .permanent(error) }
            if shouldRetry == "true" || status == 408 || status == 409 || status == 429 || status >= 500 {
                return .retry(delay: delay, error: error, throttled: status == 429)
            }
            return .permanent(error)
        }
    }

    /// A stable error code for `retry --code`: the service's own when it gives one.
    static func rowCode(status: Int, code: String?) -> String {
        switch status {
        case 429: return code.flatMap { $0.first?.isLetter == true ? $0 : nil } ?? "rate_limited"
        case 408: return "timeout"
        case 500...: return code.flatMap { $0.first?.isLetter == true ? $0 : nil } ?? "server_error"
        default:
            if let code, code.first?.isLetter == true { return code }
            return "http_\(status)"
        }
    }

    /// Exponential back-off with jitter: about 1, 2, 4 ... s, at most 60 s.
    ///
    /// - Parameter attempt: the row's try (for a failure), or the pool's consecutive 429
    ///   rounds (for a 429 without Retry-After).
    public static func backoff(attempt: Int, random: Double = Double.random(in: 0.5...1)) -> TimeInterval {
        min(60, pow(2, Double(min(max(attempt - 1, 0), 16)))) * random
    }
}
