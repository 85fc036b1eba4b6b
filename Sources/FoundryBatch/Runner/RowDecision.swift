import FoundryAuth
import Foundation
import NIOHTTP1

/// What one answer means for its row and for the run: the runner's decision, as a pure
/// function of the answer, the row, the settings and the run's throttle clocks.
///
/// The runner gathers the facts (the answer read once, the clocks when it is a 429), asks
/// ``decide(_:row:settings:credential:pacing:now:backoff:)``, and carries the action out. Nothing here
/// waits, sends or writes, so the tests call it directly for every branch.
enum RowDecision {
    /// The job's retry limits, resolved with the command line's overrides.
    struct Settings: Sendable, Equatable {
        /// A wait longer than this (seconds) stops the run: `limits.max_retry_wait`.
        var maxRetryWait: TimeInterval
        /// Tries per row: `limits.max_attempts` or `--max-attempts`.
        var maxAttempts: Int
        /// A row throttled for longer than this many times ``maxRetryWait``, while the
        /// service answers other rows, fails with its 429 code instead of waiting for ever.
        var rowThrottleFactor: Double = 4
        /// `limits.max_output_retries` and `limits.truncated`.
        var maxOutputRetries = 2
        var failTruncated = false

        init(limits: JobFile.Limits) {
            maxRetryWait = limits.maxRetryWait
            maxAttempts = limits.maxAttempts
            maxOutputRetries = limits.maxOutputRetries
            failTruncated = limits.truncated == .fail
        }
    }

    /// How the request was authorised, as far as a 401 is concerned.
    enum Credential: Sendable, Equatable {
        case none
        /// An api-key read from `variable`.
        case apiKey(variable: String)
        /// A bearer token; `refreshed` once it was dropped and fetched again for this row.
        case token(refreshed: Bool)

        init(_ authorization: RequestAuthorization, refreshed: Bool, keyVariable: String = "AZURE_OPENAI_API_KEY") {
            switch authorization {
            case .none: self = .none
            case .apiKey: self = .apiKey(variable: keyVariable)
            case .bearer: self = .token(refreshed: refreshed)
            }
        }
    }

    /// The run's clocks after a 429, read by the runner before the decision.
    struct Pacing: Sendable, Equatable {
        /// The job-wide wait and how long the service has answered only 429s.
        var job: RateGate.Throttle
        /// How long this row has been throttled without another answer.
        var rowThrottledFor: TimeInterval
    }

    /// What the runner does next with the row.
    enum Action: Sendable, Equatable {
        /// Commit `outcome` under the row's lease and leave the gate with `gate`.
        /// `countsThrottle` counts a 429 in the run's figures.
        case commit(RowOutcome, clientRequestID: String, gate: RateGate.Outcome, countsThrottle: Bool)
        /// The token was refused once: drop it and try the row again with a new one.
        case refreshToken
        /// A condition every row sent to this target would hit (its quota is exhausted
        /// beyond `max_retry_wait`, its deployment or permission is missing, its credential
        /// is refused): park the target until `until` (nil: for the rest of the run) and
        /// send the row elsewhere. The row keeps its attempts.
        case park(FatalCondition, until: Date?)
        /// Something is wrong with the run itself: stop it, the row stays pending.
        case stop(FatalCondition)
    }

    /// An answer read once: its verdict and what is kept of it with the row.
    struct Reading: Sendable {
        var verdict: RetryPolicy.Verdict
        var record: Recorded?
        var clientRequestID: String
        /// The answer's body, parsed, for the output checks.
        var answer: JSONValue?

        /// The 429's own delay when the answer is a throttle (`.some(nil)`: a 429 without
        /// one), nil for any other answer: whether the runner must read the throttle clocks.
        var throttleDelay: TimeInterval?? {
            if case .retry(let delay, _, throttled: true) = verdict { return .some(delay) }
            return nil
        }

        // Not inlined (nor `decide`): their many temporaries then live on the thread's stack
        // while they run, not in the async frame of the runner's `land`, which thousands of
        // rows in flight hold at once.
        @inline(never)
        init(_ answer: ServiceAnswer, row: ClaimedRow, url: String, clientRequestID: String, now: Date) {
            let decoded = answer.body.flatMap(ServiceBody.decode)
            verdict = RetryPolicy.classify(answer, body: decoded, deployment: row.deployment, url: url, now: now)
            record = Recorded(answer, decoded: decoded, clientRequestID: clientRequestID)
            self.clientRequestID = clientRequestID
            self.answer = decoded?.json
        }
    }

    /// Decides what `reading` means for `row`.
    ///
    /// - Parameters:
    ///   - pacing: the throttle clocks; read by the runner whenever the answer is a 429
    ///     (``Reading/throttleDelay``), nil otherwise.
    ///   - backoff: the back-off of the row's next try when the service gave no delay.
    @inline(never)
    static func decide(
        _ reading: Reading, row: ClaimedRow, settings: Settings, credential: Credential, pacing: Pacing?, now: Date,
        backoff: (Int) -> TimeInterval = { RetryPolicy.backoff(attempt: $0) }
    ) -> Action {
        let record = reading.record
        let maxWait = settings.maxRetryWait
        func commit(_ outcome: RowOutcome, gate: RateGate.Outcome = .other, countsThrottle: Bool = false) -> Action {
            .commit(outcome, clientRequestID: reading.clientRequestID, gate: gate, countsThrottle: countsThrottle)
        }
        switch reading.verdict {
        case .success:
            guard let record else { return .stop(FatalCondition("internal error: a success without an answer for row \(row.id)")) }
            let left = RateGate.Outcome.success(
                remainingRequests: record.remaining.requests, remainingTokens: record.remaining.tokens, estimate: row.estimatedTokens
            )
            let outcome = judge(
                record.response, answer: reading.answer, check: OutputCheck.expectation(of: row.body, api: row.api), api: row.api,
                attempts: row.attempts, outputRetries: row.outputRetries, settings: settings, now: now
            )
            return commit(outcome, gate: left)
        case .retry(let delay, let error, throttled: true):
            if let delay, delay > maxWait {
                return .park(
                    FatalCondition(
                        "the service asks to wait \(Bounded.int(delay)) s before the next request (HTTP 429: \(error.message)), more than limits.max_retry_wait (\(Bounded.int(maxWait)) s): the quota is exhausted. Run the job again after \(clockTime(now.addingTimeInterval(delay)))."
                    ),
                    until: now.addingTimeInterval(delay)
                )
            }
            guard let pacing else { return .stop(FatalCondition("internal error: a 429 judged without the throttle clocks, row \(row.id)")) }
            if pacing.job.throttledFor > maxWait {
                return .park(
                    FatalCondition(
                        "the service has answered nothing but 429 (\(error.code)) for \(Bounded.int(pacing.job.throttledFor)) s, longer than limits.max_retry_wait (\(Bounded.int(maxWait)) s): its quota is used up or it is overloaded. Run the job again later."
                    ),
                    until: nil
                )
            }
            // Our own back-off never waits longer than the job allows; the clock above ends it.
            let wait = min(pacing.job.wait, maxWait)
            if pacing.rowThrottledFor > settings.rowThrottleFactor * maxWait {
                var final = error
                final.message =
                    "throttled (HTTP 429) for \(Bounded.int(pacing.rowThrottledFor)) s without an answer, longer than \(Int(settings.rowThrottleFactor)) x limits.max_retry_wait: \(error.message)"
                return commit(.failed(error: final, response: record?.response), gate: .throttled(retryAfter: wait))
            }
            // A 429 paces the whole job, not this row: it does not use up the row's attempts.
            let outcome = RowOutcome.retry(at: now.addingTimeInterval(wait), error: error, response: record?.response, countsAsAttempt: false)
            return commit(outcome, gate: .throttled(retryAfter: wait), countsThrottle: true)
        case .retry(let delay, let error, throttled: false):
            if let delay, delay > maxWait {
                return .park(
                    FatalCondition(
                        "the service asks to wait \(Bounded.int(delay)) s before trying again (\(error.statusCode.map { "HTTP \($0)" } ?? error.code): \(error.message)), more than limits.max_retry_wait (\(Bounded.int(maxWait)) s). Run the job again after \(clockTime(now.addingTimeInterval(delay)))."
                    ),
                    until: now.addingTimeInterval(delay)
                )
            }
            if row.attempts + 1 >= settings.maxAttempts {
                var final = error
                final.message = "gave up after \(row.attempts + 1) attempts: \(error.message)"
                return commit(.failed(error: final, response: record?.response))
            }
            // A Retry-After of 0 (or a date already past) is no pacing: back off as without one.
            let wait = delay.flatMap { $0 > 0 ? $0 : nil } ?? backoff(row.attempts + 1)
            return commit(.retry(at: now.addingTimeInterval(wait), error: error, response: record?.response))
        case .permanent(let error):
            return commit(.failed(error: error, response: record?.response))
        case .unauthorized(let error):
            let hint: String
            switch credential {
            case .token(refreshed: false): return .refreshToken
            case .token(refreshed: true): hint = "the token was refused even after a refresh; check the credential's tenant and that the endpoint belongs to it"
            case .apiKey(let variable): hint = "check \(variable) (a key of this resource, not another's)"
            case .none: hint = "this endpoint needs a credential: set auth: in the job file"
            }
            return .park(FatalCondition("the service rejected the credentials (HTTP 401): \(error.message)\nFix: \(hint)."), until: nil)
        case .fatal(let condition):
            return .park(condition, until: nil)
        }
    }

    /// What an answer the service gave with success comes to: kept, or refused by the output
    /// checks (cut off at its cap with `limits.truncated: fail`; not the structured output
    /// its request asked for, tried again up to `limits.max_output_retries`). The online
    /// runner and the batch engine both judge answers here.
    static func judge(
        _ response: ResponseRecord, answer: JSONValue?, check: OutputCheck?, api: ServiceAPI, attempts: Int, outputRetries: Int,
        settings: Settings, now: Date
    ) -> RowOutcome {
        if response.finish == "length" {
            guard settings.failTruncated else { return .succeeded(response) }
            let error = RowError(
                code: RowError.truncated,
                message: "the answer was cut off at its token cap (finish_reason: length); raise max_tokens, then foundry-batch retry --code truncated",
                statusCode: response.statusCode
            )
            return .failed(error: error, response: response)
        }
        // A filtered answer is counted as such; there is no structure to check in it.
        guard response.finish == nil, let answer, let check, let problem = check.problem(with: answer, api: api)
        else { return .succeeded(response) }
        var error = RowError(code: RowError.invalidOutput, message: problem, statusCode: response.statusCode)
        if outputRetries >= settings.maxOutputRetries || attempts + 1 >= settings.maxAttempts {
            error.message = "\(problem) (after \(outputRetries + 1) answer\(outputRetries == 0 ? "" : "s"); limits.max_output_retries is \(settings.maxOutputRetries))"
            return .failed(error: error, response: response)
        }
        return .retry(at: now, error: error, response: response)
    }

    static func clockTime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        return formatter.string(from: date)
    }
}

/// An answer as kept with its row: the body as valid JSON, usage, ids and rate headers.
struct Recorded: Sendable, Equatable {
    var response: ResponseRecord
    var remaining: Remaining

    /// The service's `x-ratelimit-remaining-*` counts, for the gate's adaptive limit.
    struct Remaining: Sendable, Equatable {
        var requests: Int?
        var tokens: Int?
    }

    /// Nil for a try without an answer (a timeout, a dropped connection).
    init?(_ answer: ServiceAnswer, decoded: ServiceBody?, clientRequestID: String) {
        guard case .response(let status, let headers, let bytes, let latency) = answer else { return nil }
        let body = decoded?.text ?? JSONValue.string(String(decoding: bytes.prefix(65536), as: UTF8.self)).jsonText
        let usage = decoded?.usage
        response = ResponseRecord(
            statusCode: status, requestID: headers.first(name: "apim-request-id") ?? headers.first(name: "x-request-id"),
            clientRequestID: clientRequestID, body: body, promptTokens: usage?.promptTokens, completionTokens: usage?.completionTokens,
            totalTokens: usage?.totalTokens ?? usage.map { Bounded.add($0.promptTokens ?? 0, $0.completionTokens ?? 0) }, latencyMs: latency,
            finish: decoded?.finish
        )
        // "12345" or "12345 tokens": the leading whole number, else nothing.
        func count(_ name: String) -> Int? {
            headers.first(name: name).flatMap { Int($0.utf8.split(separator: 0x20).first.map { Substring($0) } ?? "") }
        }
        remaining = Remaining(requests: count("x-ratelimit-remaining-requests"), tokens: count("x-ratelimit-remaining-tokens"))
    }
}
