import FoundryAuth
import Foundation
import NIOHTTP1

/// Reads a batch's output or error file into outcomes of its rows, line by line, and
/// commits them through the queue exactly as online answers are committed.
///
/// A line with a `response` is judged by ``RetryPolicy`` as the same answer online would
/// be (a 200 succeeds, a 400 fails the row, a 5xx or 429 retries it in a later batch). A line
/// with only an `error` (`batch_expired`, `batch_cancelled`, `request_timeout`) is a row the
/// batch did not finish: it goes back to pending.
struct BatchResults: Sendable {
    let record: BatchRecord
    let limits: JobFile.Limits
    /// The answer rules (`max_output_retries`, `truncated`), as the online runner judges them.
    var judging: RowDecision.Settings { RowDecision.Settings(limits: limits) }
    /// Whether output lines name the target (a job with `targets:`).
    let pooled: Bool

    /// The custom id of row `seq` in a batch file: unique in the job, whatever the row's id.
    static func customID(_ seq: Int64) -> String { "r\(seq)" }

    /// The row of a custom id this engine wrote; nil for any other spelling ("r+1", "r01").
    static func seq(customID: String) -> Int64? {
        guard customID.hasPrefix("r"), let seq = Int64(customID.dropFirst()), customID == Self.customID(seq) else { return nil }
        return seq
    }

    /// What the collector keeps of each row the batch holds: not its body, only the output
    /// check it asks for (an index into the batch's distinct checks).
    struct Held: Sendable {
        var api: ServiceAPI
        var attempts: Int
        var outputRetries: Int
        var check: Int?
    }

    struct HeldRows: Sendable {
        var rows: [Int64: Held]
        var checks: [OutputCheck]
        var settings: RowDecision.Settings
    }

    /// What settling rows did, for the run's counters.
    struct Settled: Sendable {
        var answered = 0
        var succeeded = 0
        var failed = 0
        var promptTokens = 0
        var completionTokens = 0

        init() {}

        init(_ completions: [Completion]) {
            for completion in completions { add(completion) }
        }

        mutating func add(_ completion: Completion) {
            switch completion.outcome {
            case .succeeded(let response):
                succeeded += 1
                promptTokens = Bounded.add(promptTokens, response.promptTokens ?? 0)
                completionTokens = Bounded.add(completionTokens, response.completionTokens ?? 0)
            case .failed: failed += 1
            case .retry: break
            }
            if completion.outcome.response != nil { answered += 1 }
        }
    }

    /// Reads the downloaded file at `path` and commits each answered row once (the first line
    /// of a row in `seen`'s files wins). - Returns: what it settled.
    func read(path: String, queue: any RowQueue, seen: inout Set<Int64>) async throws -> Settled {
        var reader: LineReader
        do { reader = try LineReader(path: path) } catch { throw StorageError(path: path, message: error.message) }
        var settled = Settled()
        var batch: [Completion] = []
        var rows: [Int64: Held] = [:]
        var keys: [String: Int] = [:]
        var checks: [OutputCheck] = []
        try await queue.forEachBatchLine(number: record.number) { line in
            var check: Int?
            if let (key, expectation) = OutputCheck.keyedExpectation(of: line.body, api: line.api) {
                check = keys[key] ?? {
                    checks.append(expectation)
                    keys[key] = checks.count - 1
                    return checks.count - 1
                }()
            }
            rows[line.seq] = Held(api: line.api, attempts: line.attempts, outputRetries: line.outputRetries, check: check)
        }
        let held = HeldRows(rows: rows, checks: checks, settings: judging)
        let now = Date()
        while let line = reader.next() {
            guard let completion = outcome(of: line, held: held, now: now), seen.insert(completion.seq).inserted else { continue }
            settled.add(completion)
            batch.append(completion)
            if batch.count >= 1000 {
                try await queue.complete(batch, now: now)
                batch.removeAll(keepingCapacity: true)
            }
        }
        try await queue.complete(batch, now: now)
        return settled
    }

    /// The outcome of one line of an output or error file; nil for a line that names no row
    /// of this batch, or that only says the row was not run (it stays for ``unfinished``).
    func outcome(of line: ArraySlice<UInt8>, held: HeldRows, now: Date) -> Completion? {
        guard let value = try? JSONParser.parse(line), let customID = value["custom_id"]?.stringValue,
            let seq = Self.seq(customID: customID), let row = held.rows[seq]
        else { return nil }
        let tries = row.attempts
        let settings = held.settings
        guard let response = value["response"], case .object = response, let status = ServiceUsage.count(response["status_code"]) else {
            return nil
        }
        let body = response["body"] ?? .null
        var headers = HTTPHeaders()
        if let requestID = response["request_id"]?.stringValue { headers.add(name: "apim-request-id", value: requestID) }
        let bytes = Array(body.jsonText.utf8)
        let answer = ServiceAnswer.response(status: min(status, 999), headers: headers, body: bytes, latencyMs: turnaround(now))
        let lineID = value["id"]?.stringValue.map { $0.hasPrefix("batch_req_") ? String($0.dropFirst(10)) : $0 } ?? customID
        let decoded = ServiceBody.decode(bytes)
        let verdict = RetryPolicy.classify(answer, body: decoded, deployment: record.model, url: "batch \(record.batchID ?? "")", now: now)
        let recorded = Recorded(answer, decoded: decoded, clientRequestID: lineID)?.response
        let outcome: RowOutcome
        switch verdict {
        case .success:
            guard let recorded else { return nil }
            outcome = RowDecision.judge(
                recorded, answer: decoded?.json, check: row.check.map { held.checks[$0] }, api: row.api, attempts: tries,
                outputRetries: row.outputRetries, settings: settings, now: now
            )
        case .permanent(let error):
            outcome = .failed(error: error, response: recorded)
        case .retry(_, let error, _), .unauthorized(let error):
            outcome = again(error, attempts: tries, response: recorded, now: now)
        case .fatal(let condition):
            outcome = again(RowError(code: "batch_line_refused", message: condition.message, statusCode: status), attempts: tries, response: recorded, now: now)
        }
        return completion(seq, outcome)
    }

    /// The row back to pending for the next submission, or failed once out of attempts.
    func again(_ error: RowError, attempts: Int, response: ResponseRecord?, now: Date, countsAsAttempt: Bool = true) -> RowOutcome {
        if countsAsAttempt, attempts + 1 >= limits.maxAttempts {
            var final = error
            final.message = "gave up after \(attempts + 1) attempts: \(error.message)"
            return .failed(error: final, response: response)
        }
        return .retry(at: now, error: error, response: response, countsAsAttempt: countsAsAttempt)
    }

    /// The outcome of a row the batch holds without an answer for it.
    func unfinished(_ line: BatchLine, message: String, countsAsAttempt: Bool) -> Completion {
        let code = record.status?.lowercased() == "expired" ? "batch_expired" : "batch_unfinished"
        let outcome = again(RowError(code: code, message: message), attempts: line.attempts, response: nil, now: Date(), countsAsAttempt: countsAsAttempt)
        return completion(line.seq, outcome)
    }

    func completion(_ seq: Int64, _ outcome: RowOutcome) -> Completion {
        Completion(seq: seq, owner: record.rowOwner, outcome: outcome, target: pooled ? record.target : nil, batch: record.number)
    }

    /// Milliseconds from the batch's submission to now: how long its answers took.
    func turnaround(_ now: Date) -> Double {
        max(0, now.timeIntervalSince(record.submittedAt ?? record.createdAt)) * 1000
    }
}
