import Crypto
import Foundation
import Synchronization

/// The Batch API's files and batches, behind one lock.
///
/// No background task runs a batch: its state is computed from the clock whenever it is read.
/// Over ``EmulatorConfiguration/batchSeconds`` a batch spends the first tenth `validating`, the
/// next eight tenths `in_progress` with its lines finishing evenly (so `request_counts.completed`
/// grows from one poll to the next), and the last tenth `finalizing`. Lines that are due are
/// answered when a read finds them due; their output and error files are written when the batch
/// ends (`completed`, `expired`, `cancelled`).
final class BatchStore: Sendable {
    /// A stored file: an uploaded input, or a batch's output or error file.
    struct File: Sendable {
        var id: String
        var filename: String
        var purpose: String
        var createdAt: Date
        var data: Data

        /// The file object the Files API answers with.
        var object: [String: Any] {
            [
                "id": id, "object": "file", "bytes": data.count, "created_at": Int(createdAt.timeIntervalSince1970),
                "filename": filename, "purpose": purpose, "status": "processed", "status_details": NSNull(),
            ]
        }
    }

    /// One request line of an input file, kept as sent and parsed again when it runs.
    struct Line: Sendable {
        var customID: String
        var json: Data
    }

    /// An entry of a batch's `errors.data`: why validation failed.
    struct Problem: Sendable, Equatable {
        var code: String
        var message: String
        var line: Int?
        var param: String?

        var object: [String: Any] {
            ["code": code, "message": message, "line": line.map { $0 as Any } ?? NSNull(), "param": param.map { $0 as Any } ?? NSNull()]
        }
    }

    enum Status: String, Sendable {
        case validating, failed, inProgress = "in_progress", finalizing, completed, expired, cancelling, cancelled

        /// Azure's spelling before the GA api-versions (2024-07-01-preview): PascalCase.
        var legacy: String {
            switch self {
            case .validating: "Validating"
            case .failed: "Failed"
            case .inProgress: "InProgress"
            case .finalizing: "Finalizing"
            case .completed: "Completed"
            case .expired: "Expired"
            case .cancelling: "Cancelling"
            case .cancelled: "Cancelled"
            }
        }

        /// A state the batch never leaves, with its files written (none for `failed`).
        var hasEnded: Bool { self == .completed || self == .expired || self == .cancelled || self == .failed }
    }

    /// How a batch is going to end, decided when it is created.
    enum Fate: Sendable {
        case complete
        /// Validation fails with these problems.
        case fail([Problem])
        /// The batch expires when half its lines are done (`batch_expire_first`).
        case expire
    }

    /// What a read made the emulator do: lines answered 200 (by prompt key) and lines failed.
    struct Work: Sendable {
        var answeredPromptKeys: [String] = []
        var tokens = 0
        var failed = 0
        /// Lines of a new batch whose custom id is in another batch that has not ended: a
        /// client that puts a row in two live batches.
        var doubled = 0
        /// Answered lines the output knobs spoilt (broken JSON, cut short).
        var invalidOutputs = 0
        var truncatedOutputs = 0

        var isEmpty: Bool { answeredPromptKeys.isEmpty && failed == 0 && doubled == 0 }

        mutating func add(_ other: Work) {
            answeredPromptKeys += other.answeredPromptKeys
            tokens += other.tokens
            failed += other.failed
            doubled += other.doubled
            invalidOutputs += other.invalidOutputs
            truncatedOutputs += other.truncatedOutputs
        }
    }

    struct Batch: Sendable {
        var id: String
        var inputFileID: String
        /// As the create request spelled it (`/chat/completions` or `/v1/chat/completions`).
        var endpoint: String
        var completionWindow: String
        var operation: FoundryRoutes.Operation
        /// The deployment every line names in `body.model` (nil when validation found none).
        var deployment: String?
        var lines: [Line]
        var metadata: [String: String]?
        var createdAt: Date
        /// `batch_seconds` when the batch was created, so a later change does not rewrite its history.
        var seconds: Double
        var fate: Fate
        /// Lines run so far, in file order; the counts split them.
        var ran = 0
        var completed = 0
        var failed = 0
        /// Output and error lines written so far (JSONL).
        var output = Data()
        var errors = Data()
        var cancellingAt: Date?
        var cancelledAt: Date?
        var outputFileID: String?
        var errorFileID: String?

        /// End of `validating`.
        var validatedAt: Date { createdAt.addingTimeInterval(seconds * 0.1) }
        /// End of `in_progress`: every line has run.
        var processedAt: Date { createdAt.addingTimeInterval(seconds * 0.9) }
        var finishedAt: Date { createdAt.addingTimeInterval(seconds) }
        /// Half way through `in_progress`, when an expiring batch gives up.
        var expiryAt: Date { createdAt.addingTimeInterval(seconds * 0.5) }
        /// The completion window's end, as both services report it.
        var expiresAt: Date { createdAt.addingTimeInterval(24 * 3600) }

        func status(at now: Date) -> Status {
            if cancelledAt != nil { return .cancelled }
            if cancellingAt != nil { return .cancelling }
            if now < validatedAt { return .validating }
            switch fate {
            case .fail: return .failed
            case .expire: return now < expiryAt ? .inProgress : .expired
            case .complete: return now < processedAt ? .inProgress : now < finishedAt ? .finalizing : .completed
            }
        }

        /// Lines due by `moment`: they finish evenly over `in_progress`.
        func due(at moment: Date) -> Int {
            if case .fail = fate { return 0 }
            guard moment >= validatedAt else { return 0 }
            let span = processedAt.timeIntervalSince(validatedAt)
            let share = span > 0 ? min(max(moment.timeIntervalSince(validatedAt) / span, 0), 1) : 1
            let due = Int((Double(lines.count) * share).rounded(.down))
            if case .expire = fate { return min(due, lines.count / 2) }
            return due
        }

        /// When line `index` finished, for its answer's `created`.
        func finishTime(ofLine index: Int) -> Date {
            let span = processedAt.timeIntervalSince(validatedAt)
            return validatedAt.addingTimeInterval(span * Double(index + 1) / Double(max(lines.count, 1)))
        }

        /// Runs the lines due by `now`. A read also completes a pending cancel.
        mutating func advance(to now: Date, read: Bool, configuration: EmulatorConfiguration, dice: OutputDice) -> Work {
            // `cancelling` lasts until the next read, as the service's lasts a while.
            if read, cancellingAt != nil, cancelledAt == nil { cancelledAt = now }
            let target: Int
            switch status(at: now) {
            case .validating, .failed: target = 0
            case .inProgress: target = due(at: now)
            case .finalizing, .completed: target = lines.count
            case .expired: target = lines.count / 2
            case .cancelling, .cancelled: target = due(at: cancellingAt ?? now)
            }
            var work = Work()
            while ran < target {
                run(ran, configuration: configuration, dice: dice, work: &work)
                ran += 1
            }
            return work
        }

        /// Answers one line as the online route would, or fails it (`batch_fail_rate`, content filter).
        mutating func run(_ index: Int, configuration: EmulatorConfiguration, dice: OutputDice, work: inout Work) {
            let line = lines[index]
            let requestID = UUID().uuidString.lowercased()
            let parsed = (try? JSONSerialization.jsonObject(with: line.json)) as? [String: Any]
            let body = parsed?["body"] as? [String: Any] ?? [:]
            let inference = InferenceRequest(body: body)
            var record: [String: Any] = ["id": BatchStore.lineID(), "custom_id": line.customID, "error": NSNull()]
            if BatchStore.fails(line.customID, in: id, rate: configuration.batchFailRate, seed: configuration.seed) {
                record["response"] = ["status_code": 500, "request_id": requestID, "body": AzureError.serverError] as [String: Any]
                errors.append(BatchStore.jsonLine(record))
                failed += 1
                work.failed += 1
            } else if FoundryRoutes.isFiltered(inference, phrase: configuration.contentFilterPhrase) {
                record["response"] = ["status_code": 400, "request_id": requestID, "body": AzureError.contentFilter] as [String: Any]
                errors.append(BatchStore.jsonLine(record))
                failed += 1
                work.failed += 1
            } else {
                let name = deployment ?? inference.deployment ?? ""
                // The same dice as online: a line sent again in a later batch rolls again.
                let faults = FoundryRoutes.outputFaults(operation, inference, deployment: name, dice: dice, configuration: configuration)
                let answer = FoundryRoutes.answer(
                    operation, body: body, inference: inference, deployment: name,
                    requestID: requestID, created: finishTime(ofLine: index), faults: faults
                )
                record["response"] = ["status_code": 200, "request_id": requestID, "body": answer.body] as [String: Any]
                output.append(BatchStore.jsonLine(record))
                completed += 1
                work.answeredPromptKeys.append(answer.promptKey)
                work.tokens += answer.tokens
                if faults.invalid { work.invalidOutputs += 1 }
                if faults.truncated { work.truncatedOutputs += 1 }
            }
        }

        /// Lines that never ran go to the error file with `error` set and no `response`.
        mutating func closeUnfinished(code: String, message: String) {
            for line in lines[ran...] {
                let record: [String: Any] = [
                    "id": BatchStore.lineID(), "custom_id": line.customID, "response": NSNull(),
                    "error": ["code": code, "message": message],
                ]
                errors.append(BatchStore.jsonLine(record))
            }
            ran = lines.count
        }

        /// The batch object at `now`; `legacy` spells status and timestamps as 2024-07-01-preview did.
        func object(at now: Date, legacy: Bool) -> [String: Any] {
            let current = self.status(at: now)
            func time(_ date: Date?) -> Any {
                guard let date else { return NSNull() }
                if legacy {
                    let formatter = ISO8601DateFormatter()
                    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                    return formatter.string(from: date)
                }
                return Int(date.timeIntervalSince1970)
            }
            func text(_ value: String?) -> Any { value.map { $0 as Any } ?? NSNull() }
            // The clock stops for the phases when a cancel arrived.
            let clock = min(now, cancellingAt ?? now)
            var problems: [Problem]?
            if case .fail(let found) = fate { problems = found }
            var isComplete = false
            if case .complete = fate { isComplete = true }
            let inProgressAt: Date? = problems == nil && clock >= validatedAt ? validatedAt : nil
            let finalizingAt: Date? = isComplete && clock >= processedAt ? processedAt : nil
            let errorList: Any
            if current == .failed, let problems {
                errorList = ["object": "list", "data": problems.map(\.object)] as [String: Any]
            } else {
                errorList = NSNull()
            }
            var object: [String: Any] = [:]
            object["id"] = id
            object["object"] = "batch"
            object["endpoint"] = endpoint
            object["model"] = text(deployment)
            object["errors"] = errorList
            object["input_file_id"] = inputFileID
            object["completion_window"] = completionWindow
            object["status"] = legacy ? current.legacy : current.rawValue
            object["output_file_id"] = text(outputFileID)
            object["error_file_id"] = text(errorFileID)
            object["created_at"] = time(createdAt)
            object["in_progress_at"] = time(inProgressAt)
            object["expires_at"] = time(expiresAt)
            object["finalizing_at"] = time(finalizingAt)
            object["completed_at"] = time(current == .completed ? finishedAt : nil)
            object["failed_at"] = time(current == .failed ? validatedAt : nil)
            object["expired_at"] = time(current == .expired ? expiryAt : nil)
            object["cancelling_at"] = time(cancellingAt)
            object["cancelled_at"] = time(cancelledAt)
            object["request_counts"] = ["total": lines.count, "completed": completed, "failed": failed]
            object["metadata"] = metadata.map { $0 as Any } ?? NSNull()
            return object
        }
    }

    struct Inner {
        var files: [String: File] = [:]
        var batches: [String: Batch] = [:]
        /// Batch ids, oldest first.
        var order: [String] = []
        /// How many creates were refused, batches failed for the token limit, and batches expired,
        /// against the knobs' "first N".
        var refusedCreates = 0
        var tokenLimitFailures = 0
        var expiries = 0
    }

    let inner = Mutex(Inner())
    /// The output knobs' dice, shared with the online routes so a prompt's attempts count across both.
    let outputDice: OutputDice

    init(outputDice: OutputDice = OutputDice()) {
        self.outputDice = outputDice
    }

    /// What a create came to.
    enum Creation: Sendable {
        /// Refused 400 `token_limit_exceeded`, with the message.
        case refused(String)
        case created(Batch)
    }

    /// What a cancel came to.
    enum Cancellation: Sendable {
        case notFound
        /// The batch has already ended (or failed validation): nothing to cancel.
        case ended(Batch)
        case cancelling(Batch)
    }

    // MARK: Files

    func upload(filename: String, purpose: String, data: Data, now: Date) -> File {
        let file = File(id: Self.fileID(), filename: filename, purpose: purpose, createdAt: now, data: data)
        inner.withLock { $0.files[file.id] = file }
        return file
    }

    func file(_ id: String) -> File? {
        inner.withLock { $0.files[id] }
    }

    /// Deletes a file; false when there is none. A batch already created keeps its lines.
    func deleteFile(_ id: String) -> Bool {
        inner.withLock { $0.files.removeValue(forKey: id) != nil }
    }

    // MARK: Batches

    /// Creates a batch from a validated input file, unless the knobs refuse it.
    ///
    /// The first `batch_refuse_creates` creates are refused; of the batches created, those whose
    /// file is valid fail validation for the token limit while `batch_fail_validation_token_limit`
    /// lasts, then expire while `batch_expire_first` lasts.
    func create(
        inputFileID: String, endpoint: String, completionWindow: String, operation: FoundryRoutes.Operation,
        validation: Validation, metadata: [String: String]?, configuration: EmulatorConfiguration, now: Date
    ) -> (Creation, Work) {
        inner.withLock { state in
            let deployment = validation.deployment ?? "unknown"
            if state.refusedCreates < configuration.batchRefuseCreates {
                state.refusedCreates += 1
                return (.refused(Self.tokenLimitMessage(deployment: deployment)), Work())
            }
            var fate = Fate.complete
            if !validation.problems.isEmpty {
                fate = .fail(validation.problems)
            } else if state.tokenLimitFailures < configuration.batchFailValidationTokenLimit {
                state.tokenLimitFailures += 1
                fate = .fail([Problem(code: "token_limit_exceeded", message: Self.tokenLimitMessage(deployment: deployment))])
            } else if state.expiries < configuration.batchExpireFirst {
                state.expiries += 1
                fate = .expire
            }
            var batch = Batch(
                id: "batch_" + UUID().uuidString.lowercased(), inputFileID: inputFileID, endpoint: endpoint,
                completionWindow: completionWindow, operation: operation, deployment: validation.deployment,
                lines: validation.lines, metadata: metadata, createdAt: now, seconds: configuration.batchSeconds, fate: fate
            )
            // With batch_seconds 0 the batch is done before the create answers.
            var work = batch.advance(to: now, read: false, configuration: configuration, dice: outputDice)
            var live = Set<String>()
            for other in state.batches.values where !other.status(at: now).hasEnded { live.formUnion(other.lines.map(\.customID)) }
            work.doubled = batch.lines.count { live.contains($0.customID) }
            Self.closeIfEnded(&batch, in: &state, now: now)
            state.batches[batch.id] = batch
            state.order.append(batch.id)
            return (.created(batch), work)
        }
    }

    /// The batch as of `now`, having run what is due.
    func read(_ id: String, now: Date, configuration: EmulatorConfiguration) -> (Batch, Work)? {
        inner.withLock { state in
            guard var batch = state.batches[id] else { return nil }
            let work = batch.advance(to: now, read: true, configuration: configuration, dice: outputDice)
            Self.closeIfEnded(&batch, in: &state, now: now)
            state.batches[id] = batch
            return (batch, work)
        }
    }

    /// Batches newest first, `limit` of them after the batch `after` (exclusive).
    func list(limit: Int, after: String?, now: Date, configuration: EmulatorConfiguration) -> (batches: [Batch], hasMore: Bool, work: Work) {
        inner.withLock { state in
            var ids = Array(state.order.reversed())
            if let after, let index = ids.firstIndex(of: after) { ids = Array(ids[(index + 1)...]) }
            let page = Array(ids.prefix(limit))
            var work = Work()
            var batches: [Batch] = []
            for id in page {
                guard var batch = state.batches[id] else { continue }
                work.add(batch.advance(to: now, read: true, configuration: configuration, dice: outputDice))
                Self.closeIfEnded(&batch, in: &state, now: now)
                state.batches[id] = batch
                batches.append(batch)
            }
            return (batches: batches, hasMore: ids.count > page.count, work: work)
        }
    }

    /// Asks a batch to stop: `cancelling` now, `cancelled` at the next read. Lines done by now
    /// stay in the output file; the rest go to the error file as `batch_cancelled`.
    func cancel(_ id: String, now: Date, configuration: EmulatorConfiguration) -> (Cancellation, Work) {
        inner.withLock { state in
            guard var batch = state.batches[id] else { return (.notFound, Work()) }
            let work = batch.advance(to: now, read: false, configuration: configuration, dice: outputDice)
            Self.closeIfEnded(&batch, in: &state, now: now)
            let status = batch.status(at: now)
            if status == .cancelling {
                state.batches[id] = batch
                return (.cancelling(batch), work)
            }
            if status.hasEnded {
                state.batches[id] = batch
                return (.ended(batch), work)
            }
            batch.cancellingAt = now
            state.batches[id] = batch
            return (.cancelling(batch), work)
        }
    }

    /// Writes the output and error files of a batch that has just ended.
    static func closeIfEnded(_ batch: inout Batch, in state: inout Inner, now: Date) {
        let status = batch.status(at: now)
        guard status.hasEnded, status != .failed, batch.outputFileID == nil else { return }
        switch status {
        case .expired:
            batch.closeUnfinished(code: "batch_expired", message: "This request could not be executed before the completion window expired.")
        case .cancelled:
            batch.closeUnfinished(code: "batch_cancelled", message: "This request was not executed because the batch was cancelled.")
        default:
            break
        }
        // Both files always exist once a batch ends, an empty error file included, as Azure does.
        let output = File(id: fileID(), filename: "\(batch.id)_output.jsonl", purpose: "batch_output", createdAt: now, data: batch.output)
        let errors = File(id: fileID(), filename: "\(batch.id)_error.jsonl", purpose: "batch_output", createdAt: now, data: batch.errors)
        state.files[output.id] = output
        state.files[errors.id] = errors
        batch.outputFileID = output.id
        batch.errorFileID = errors.id
    }

    // MARK: Validation

    /// An input file read against a batch's endpoint: its lines, the one deployment they name,
    /// and what is wrong with it (the batch fails validation when anything is).
    struct Validation: Sendable {
        var lines: [Line] = []
        var deployment: String?
        var problems: [Problem] = []
    }

    /// Azure's ceiling on requests per file.
    static let maxLines = 100_000
    /// Problems reported per file, as the service lists only the first few.
    static let maxProblems = 10

    /// Reads an input file as Azure's validation does.
    static func validate(_ data: Data, operation: FoundryRoutes.Operation, endpoint: String, isDeployed: (String) -> Bool) -> Validation {
        var result = Validation()
        func problem(_ code: String, _ message: String, line: Int? = nil, param: String? = nil) {
            if result.problems.count < maxProblems { result.problems.append(Problem(code: code, message: message, line: line, param: param)) }
        }
        // Azure treats a UTF-8 BOM as invalid and says so only in this generic message.
        if data.starts(with: [0xEF, 0xBB, 0xBF]) {
            problem(
                "invalid_request",
                "Validation failed: A valid model deployment name couldn't be extracted from the input file. Please ensure that each row in the input file has a valid deployment name specified in the 'model' field, and that the deployment name is consistent across all rows.",
                line: 1
            )
            return result
        }
        let rows = splitLines(data).enumerated().filter { !isBlank($0.element) }
        if rows.isEmpty {
            problem("empty_file", "The input file is empty. Please ensure that the batch contains at least one request.")
            return result
        }
        if rows.count > maxLines {
            problem("too_many_tasks", "The number of requests in the input file exceeds the maximum allowed value of 100,000. Please ensure your total requests are under 100,000 and resubmit the job.")
            return result
        }
        var seen: [String: Int] = [:]
        var firstModelLine = 0
        for (index, json) in rows {
            let number = index + 1
            guard let object = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else {
                problem("invalid_json_line", "Line \(number) of the input file could not be parsed as valid JSON. Please ensure no typos, proper opening and closing brackets, and quotes as per JSON standard, and resubmit the request.", line: number)
                continue
            }
            guard let customID = object["custom_id"] as? String, !customID.isEmpty else {
                problem("invalid_request", "Line \(number) has no custom_id: every request needs a custom_id, unique in the file.", line: number, param: "custom_id")
                continue
            }
            if let earlier = seen[customID] {
                problem("duplicate_custom_id", "The custom ID '\(customID)' on line \(number) is a duplicate of the custom ID on line \(earlier). Please ensure that the custom ID parameter is unique for each request in the batch.", line: number, param: "custom_id")
                continue
            }
            seen[customID] = number
            guard (object["method"] as? String)?.uppercased() == "POST" else {
                problem("invalid_request", "The method on line \(number) must be POST.", line: number, param: "method")
                continue
            }
            guard let url = object["url"] as? String, operationFor(path: url) == operation else {
                let url = object["url"] as? String ?? ""
                problem("url_mismatch", "The url '\(url)' on line \(number) doesn't match the batch's endpoint '\(endpoint)'. Please ensure all request URLs are the same, and that they match the endpoint URL associated with your Azure OpenAI deployment.", line: number, param: "url")
                continue
            }
            guard let body = object["body"] as? [String: Any] else {
                problem("invalid_request", "Line \(number) has no body object.", line: number, param: "body")
                continue
            }
            guard let model = body["model"] as? String, !model.isEmpty else {
                problem("invalid_request", "Validation failed: A valid model deployment name couldn't be extracted from line \(number) of the input file. Please ensure that each row in the input file has a valid deployment name specified in the 'model' field.", line: number, param: "body.model")
                continue
            }
            if let deployment = result.deployment {
                if model != deployment {
                    problem("model_mismatch", "The model deployment name '\(model)' on line \(number) doesn't match '\(deployment)' on line \(firstModelLine). Please ensure that all requests in the batch point to the same Azure OpenAI model deployment in the `model` property of the request.", line: number, param: "body.model")
                    continue
                }
            } else {
                result.deployment = model
                firstModelLine = number
            }
            result.lines.append(Line(customID: customID, json: json))
        }
        if let deployment = result.deployment, !isDeployed(deployment) {
            problem("model_not_found", "The Azure OpenAI model deployment name '\(deployment)' that was specified in the `model` property of the input file wasn't found. Please ensure this name points to a valid Azure OpenAI model deployment.", line: firstModelLine, param: "body.model")
        }
        return result
    }

    /// The online operation a batch endpoint or line url names, with or without `/v1`.
    static func operationFor(path: String) -> FoundryRoutes.Operation? {
        var path = String(path.split(separator: "?", maxSplits: 1).first ?? "")
        if path.hasPrefix("/v1/") { path = String(path.dropFirst(3)) }
        switch path {
        case "/chat/completions": return .chat
        case "/responses": return .responses
        case "/embeddings": return .embeddings
        default: return nil
        }
    }

    /// Lines split on LF, a trailing CR dropped; none after a final newline.
    static func splitLines(_ data: Data) -> [Data] {
        var lines: [Data] = []
        var start = data.startIndex
        while start < data.endIndex {
            let end = data[start...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
            var line = data[start..<end]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            lines.append(Data(line))
            start = end < data.endIndex ? data.index(after: end) : data.endIndex
        }
        return lines
    }

    static func isBlank(_ line: Data) -> Bool {
        line.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }
    }

    // MARK: Helpers

    /// The enqueued-token quota message, as Azure words it.
    static func tokenLimitMessage(deployment: String) -> String {
        "The number of enqueued tokens has surpassed the configured limit of 90K for the deployment '\(deployment)'. Please either increase the limit or try again once the current jobs have finished."
    }

    /// Whether a line fails (`batch_fail_rate`): the same lines of a batch for the same seed,
    /// whatever the order; a line sent again in another batch rolls again, as a transient
    /// failure would.
    static func fails(_ customID: String, in batch: String, rate: Double, seed: UInt64) -> Bool {
        guard rate > 0 else { return false }
        let digest = Array(SHA256.hash(data: Data("\(seed)\u{0}\(batch)\u{0}\(customID)".utf8)))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Double(value >> 11) / Double(UInt64(1) << 53) < rate
    }

    static func fileID() -> String {
        "file-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }

    static func lineID() -> String {
        "batch_req_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }

    static func jsonLine(_ object: [String: Any]) -> Data {
        var data = Data(EmulatorJSON.bytes(object))
        data.append(UInt8(ascii: "\n"))
        return data
    }
}
