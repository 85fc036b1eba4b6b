import FoundryAuth
import Foundation
import Logging
import Synchronization

/// Runs a job's rows through the provider's Batch API: files cut from the queue, uploaded,
/// created as batches, polled, and their answers recorded through the queue as an online
/// answer would be.
///
/// Every step is committed to the queue before and after it (``BatchPhase``), so a run
/// killed at any moment resumes the same batches: a batch whose create went out without an
/// answer is looked for at the provider before another is made, and a row is bound to one
/// live batch at a time.
final class BatchEngine: Sendable {
    /// What the engine does with the job's batches.
    enum Mode: Sendable, Equatable {
        /// Submit pending rows and follow every batch until all rows are done.
        case run
        /// Cancel the live batches, collect what they finished, and submit nothing.
        case cancel
    }

    let settings: JobSettings
    let queue: any RowQueue
    let control: RunControl
    let logger: Logger
    let progress: ProgressMode
    /// Wait until every batch ended (`run`), or submit, poll once and return (`--no-wait`).
    let wait: Bool
    /// How long a call on the wire may finish after a stop before it is cancelled.
    let gracePeriod: TimeInterval
    /// The batch client of each target, by name, in the job's order.
    let clients: [(spec: JobFile.Target, client: BatchClient)]
    /// `engine: auto`: asked before each round whether the rest must now go online.
    let shouldSwitch: (@Sendable (QueueReport) async -> Bool)?
    /// Files are written and downloaded beside the state database.
    let folder: String
    let counters = RunCountersBox()
    /// This run's claim on the batches it advances (`host/pid/nonce/space`, as row leases).
    let owner = LeaseOwner.make()

    /// How long a claim on a batch holds without being renewed (every quarter of it).
    static let claimLength: TimeInterval = 60
    /// Creates in a row without a clear answer before the run stops.
    static let maxUncertainCreates = 8

    /// What a run of the engine remembers between rounds; nothing a crash must keep.
    struct Memory {
        var polled: [Int64: Date] = [:]
        /// Creates of each batch whose outcome was unknown.
        var uncertain: [Int64: Int] = [:]
        /// Batches this run asked the provider to cancel.
        var cancelSent: Set<Int64> = []
    }

    var job: JobFile { settings.job }
    var batch: JobFile.Batch { settings.job.batch }

    init(
        session: JobSession, service: ServiceSession, control: RunControl, options: RunOptions, logger: Logger,
        shouldSwitch: (@Sendable (QueueReport) async -> Bool)? = nil
    ) {
        settings = session.settings
        queue = session.queue
        self.control = control
        self.logger = logger
        wait = options.wait
        progress = options.progress
        gracePeriod = options.gracePeriod
        self.shouldSwitch = shouldSwitch
        // Batch files are scratch beside the state file; with a PostgreSQL state, beside the results.
        folder = ((PostgresLocation.isURL(session.paths.state) ? session.paths.output : session.paths.state) as NSString).deletingLastPathComponent
        let limits = session.settings.limits
        clients = service.targets.map { connected in
            (
                connected.spec,
                BatchClient(
                    http: service.http, target: connected.target, name: connected.spec.name, timeout: limits.timeout,
                    maxRetryWait: limits.maxRetryWait, logger: logger, control: control
                )
            )
        }
    }

    /// How the engine's run ended.
    enum Ending: Sendable, Equatable {
        /// Every row is done, or (with `--no-wait`) batches still run at the provider.
        case finished
        /// `engine: auto`: the live batches were cancelled and collected; the rest goes online.
        case switchToOnline
    }

    /// Runs the job's batches in `mode` until done, stopped, or (auto) switched.
    ///
    /// - Throws: ``FatalCondition`` for a condition every batch would hit (a validation
    ///   failure, a rejected credential), ``StorageError`` from the queue.
    func run(_ mode: Mode) async throws -> Ending {
        var mode = mode
        var memory = Memory()
        var ending = Ending.finished
        /// `foundry-batch cancel` asked, from another process, while this run waited.
        var cancelledElsewhere = false
        defer { if progress == .terminal { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) } }
        while await control.reason == nil {
            if mode == .run, let shouldSwitch, await shouldSwitch(try await queue.report()) {
                logger.notice("finish_by cannot be met by the batches: cancelling them, the rest goes online")
                mode = .cancel
                ending = .switchToOnline
            }
            if mode == .run { try await submitPending() }
            for listed in try await queue.batches() where listed.phase.isLive {
                if await control.reason != nil { break }
                if mode == .run, listed.cancelRequested {
                    logger.notice("the job's batches are being cancelled (foundry-batch cancel): submitting nothing more")
                    mode = .cancel
                    cancelledElsewhere = true
                }
                if mode == .cancel, !listed.cancelRequested { try await queue.requestCancel(listed.number) }
                // Another run on the job may be advancing it: one at a time, then as it is now.
                guard try await claim(listed), var record = try await queue.batches().first(where: { $0.number == listed.number }),
                    record.phase.isLive
                else { continue }
                try await advance(&record, memory: &memory)
            }
            try await report()
            let live = try await queue.batches().filter(\.phase.isLive)
            if live.isEmpty {
                if cancelledElsewhere {
                    throw FatalCondition(
                        "the job's batches were cancelled (foundry-batch cancel): what they finished is kept, the rest is pending; run the job again to send it"
                    )
                }
                if mode == .cancel { return ending }
                let (nextDue, _) = try await queue.activity()
                guard let nextDue else { return ending }
                // Rows that wait for a retry (a failed line's back-off) go in a later batch.
                if nextDue > Date(), !wait { return ending }
                try await pause(min(max(nextDue.timeIntervalSinceNow, 0.05), batch.pollInterval))
                continue
            }
            if !wait, mode == .run { return ending }
            try await pause(nextWake(live, polled: memory.polled))
        }
        return ending
    }

    /// ``run(_:)`` as a task the run's control can cancel: a stop (Ctrl-C) lets a call on
    /// the wire (an upload may take minutes) finish for the grace period, then cancels it.
    /// The batches keep running at the provider either way.
    func runStoppable(_ mode: Mode) async throws -> Ending {
        let result = Mutex<Result<Ending, any Error>>(.failure(CancellationError()))
        let work = Task {
            do {
                let ending = try await self.run(mode)
                result.withLock { $0 = .success(ending) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
        }
        await control.register(work)
        let control = self.control, queue = self.queue, owner = self.owner
        let renewal = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: Bounded.duration(seconds: Self.claimLength / 4))
                if Task.isCancelled { break }
                try? await queue.renewBatchClaims(owner: owner, until: Date().addingTimeInterval(Self.claimLength))
            }
        }
        let watcher = Task {
            await control.waitForStop()
            try? await Task.sleep(for: Bounded.duration(seconds: gracePeriod))
            if !Task.isCancelled { await control.cancelWorkers() }
        }
        await work.value
        watcher.cancel()
        renewal.cancel()
        await watcher.value
        await renewal.value
        // The next run (cron's, or another on the job) need not wait for the claims to expire.
        try? await queue.renewBatchClaims(owner: owner, until: nil)
        return try result.withLock { $0 }.get()
    }

    /// The engine's run as every engine's: the counters, and a condition that stopped it.
    func outcome(_ mode: Mode) async throws -> (Ending, RunCounters, StopReason?) {
        do {
            let ending = try await runStoppable(mode)
            return (ending, counters.snapshot, await control.reason)
        } catch let condition as FatalCondition {
            return (.finished, counters.snapshot, .fatal(condition))
        } catch is CancellationError {
            return (.finished, counters.snapshot, await control.reason ?? .interrupted)
        }
    }

    /// Seconds until the next batch is due a poll or a create, at least a twentieth of a second.
    func nextWake(_ live: [BatchRecord], polled: [Int64: Date]) -> TimeInterval {
        let now = Date()
        var soonest = batch.pollInterval
        for record in live {
            let due: Date =
                switch record.phase {
                case .uploaded, .creating: record.notBefore ?? now
                case .submitted: (polled[record.number] ?? .distantPast).addingTimeInterval(batch.pollInterval)
                default: now
                }
            soonest = min(soonest, due.timeIntervalSince(now))
        }
        return max(soonest, 0.05)
    }

    /// Sleeps `seconds`, waking early when the run is stopped.
    func pause(_ seconds: TimeInterval) async throws {
        let end = Date().addingTimeInterval(seconds)
        while await control.reason == nil, Date() < end {
            try await Task.sleep(for: Bounded.duration(seconds: min(end.timeIntervalSinceNow, 0.1)))
        }
    }

    // MARK: Submitting

    /// The target that runs batches of `model`: the first of the lowest tier that serves it.
    func client(for model: String) -> (spec: JobFile.Target, client: BatchClient)? {
        clients.filter { $0.spec.serves(model) }.min { $0.spec.priority < $1.spec.priority }
    }

    func client(named name: String) throws -> BatchClient {
        guard let found = clients.first(where: { $0.spec.name == name }) else {
            throw FatalCondition("a batch of this job runs on target '\(name)', which the job file no longer names; put it back to collect the batch")
        }
        return found.client
    }

    /// What is left of `limits.max_tokens_total` for new batches: the budget less the tokens
    /// answered so far and the estimates of the rows in live batches. Nil: no budget.
    func budgetLeft() async throws -> Int? {
        guard let budget = settings.limits.maxTokensTotal else { return nil }
        let counts = try await queue.counts().job
        let held = try await queue.batches().filter(\.phase.isLive).reduce(0) { Bounded.add($0, $1.tokens) }
        return max(0, budget - Bounded.add(Bounded.add(counts.promptTokens, counts.completionTokens), held))
    }

    /// Cuts every due pending row into new batches: one model and API per file, within both
    /// limits and the token budget.
    ///
    /// - Throws: ``FatalCondition`` when the budget leaves no room for a pending row and no
    ///   batch is live that could free some.
    func submitPending() async throws {
        var left = try await budgetLeft()
        for group in try await queue.pendingGroups(now: Date()) {
            guard let (spec, client) = client(for: group.model) else {
                throw FatalCondition("no target serves model '\(group.model)' for a batch; add it to a target's models:")
            }
            let deployment = batch.deployment(for: group.model, on: spec)
            let endpoint = client.endpoint(for: group.api)
            // The envelope, a custom id, and a deployment name longer than the row's model.
            let overhead = 64 + endpoint.utf8.count + max(0, JSONValue.string(deployment).jsonText.utf8.count - group.model.utf8.count)
            var cut = BatchCut(
                target: spec.name, model: group.model, api: group.api, maxRows: batch.maxRequestsPerFile, maxBytes: batch.maxBytesPerFile,
                lineOverhead: overhead, maxTokens: left ?? .max
            )
            while await control.reason == nil, let record = try await queue.cutBatch(cut, now: Date()) {
                logger.info("batch cut", metadata: ["batch": "\(record.number)", "model": "\(record.model)", "rows": "\(record.rows)"])
                if let remaining = left {
                    left = max(0, remaining - record.tokens)
                    cut.maxTokens = left ?? .max
                }
            }
        }
        if let budget = settings.limits.maxTokensTotal, try await queue.batches().allSatisfy({ !$0.phase.isLive }),
            try await !queue.pendingGroups(now: Date()).isEmpty
        {
            throw FatalCondition("the token budget limits.max_tokens_total = \(budget) would be passed by the next batch; raise it to go on")
        }
    }

    /// Claims `record` for this run; a claim held by a process on this machine that died is taken over.
    func claim(_ record: BatchRecord) async throws -> Bool {
        let dead = record.owner.flatMap { $0 != owner && LeaseOwner.isDeadLocal($0) ? $0 : nil }
        let now = Date()
        return try await queue.claimBatch(record.number, owner: owner, until: now.addingTimeInterval(Self.claimLength), now: now, replacing: dead)
    }

    /// Moves `record` on from its phase as far as it can go now.
    func advance(_ record: inout BatchRecord, memory: inout Memory) async throws {
        let client = try client(named: record.target)
        if record.cancelRequested, record.batchID == nil, record.phase == .cut || record.phase == .uploaded {
            // Never at the provider: its rows simply go back.
            try await settle(&record, unfinished: "cancelled before it was submitted", countsAsAttempt: false)
            return
        }
        if record.phase == .cut {
            let path = filePath(record, "jsonl")
            try await writeFile(record, to: path, client: client)
            record.fileID = try await client.upload(path: path, name: record.fileName)
            try? FileManager.default.removeItem(atPath: path)
            record.phase = .uploaded
            try await queue.updateBatch(record)
            logger.info("batch file uploaded", metadata: ["batch": "\(record.number)", "file": "\(record.fileID ?? "")"])
        }
        if record.phase == .creating, let fileID = record.fileID {
            if let notBefore = record.notBefore, notBefore > Date() { return }
            // The create may have reached the provider (before a crash, or without a clear
            // answer): adopt that batch rather than make a second.
            if let found = try await client.find(inputFileID: fileID) {
                adopt(found, into: &record)
                try await queue.updateBatch(record)
            } else {
                record.phase = .uploaded
                record.notBefore = nil
            }
        }
        if record.phase == .uploaded {
            if let notBefore = record.notBefore, notBefore > Date() { return }
            guard record.cancelRequested == false else {
                try await settle(&record, unfinished: "cancelled before it was submitted", countsAsAttempt: false)
                return
            }
            try await create(&record, client: client, memory: &memory)
            memory.polled[record.number] = Date()
            if record.phase != .submitted { return }
        }
        if record.phase == .submitted, let id = record.batchID {
            do {
                try await follow(&record, id: id, client: client, memory: &memory)
            } catch is BatchGone {
                // Nothing runs there: the rows simply go back, without using an attempt.
                logger.warning("the provider does not know the batch; its rows go back to pending", metadata: ["batch": "\(record.number)", "id": "\(id)"])
                record.message = "the provider does not know batch \(id) (HTTP 404)"
                try await settle(&record, unfinished: "the provider does not know batch \(id)", countsAsAttempt: false)
                return
            }
        }
        if record.phase == .ended { try await collect(&record, client: client) }
    }

    /// Cancels `record` at the provider when asked and polls it when due.
    func follow(_ record: inout BatchRecord, id: String, client: BatchClient, memory: inout Memory) async throws {
        // A batch that ended or is being cancelled already is not cancelled again (the
        // provider answers 409 for an ended one).
        let status = record.status.flatMap(BatchObject.Status.init(spelling:))
        if record.cancelRequested, status != .cancelling, !(status?.isTerminal ?? false), !memory.cancelSent.contains(record.number) {
            memory.cancelSent.insert(record.number)
            let answer = try await client.cancel(id)
            logger.info("batch cancel requested", metadata: ["batch": "\(record.number)", "id": "\(id)"])
            update(&record, from: answer)
            try await queue.updateBatch(record)
        }
        guard Date().timeIntervalSince(memory.polled[record.number] ?? .distantPast) >= batch.pollInterval else { return }
        let answer = try await client.get(id)
        memory.polled[record.number] = Date()
        update(&record, from: answer)
        if let status = answer.status, status.isTerminal {
            if status == .failed, answer.outputFileID == nil {
                try await failed(&record, answer)
                return
            }
            record.phase = .ended
        }
        try await queue.updateBatch(record)
    }

    func create(_ record: inout BatchRecord, client: BatchClient, memory: inout Memory) async throws {
        guard let fileID = record.fileID else { return }
        record.phase = .creating
        try await queue.updateBatch(record)
        do {
            let answer = try await client.create(fileID: fileID, api: record.api, window: batch.completionWindow)
            adopt(answer, into: &record)
            try await queue.updateBatch(record)
            logger.info("batch created", metadata: ["batch": "\(record.number)", "id": "\(answer.id)", "rows": "\(record.rows)"])
        } catch let uncertain as UncertainCreate {
            // The batch may exist: the next round looks for it before creating again.
            let tries = memory.uncertain[record.number, default: 0] + 1
            memory.uncertain[record.number] = tries
            guard tries < Self.maxUncertainCreates else {
                throw FatalCondition(
                    "the batch create for \(record.fileName) on target '\(record.target)' got no clear answer \(tries) times (\(uncertain.reason)). Run the job again later: it looks for the batch before creating another."
                )
            }
            record.notBefore = Date().addingTimeInterval(min(batch.pollInterval, 5) * Double(tries))
            record.message = "the create got no clear answer: \(uncertain.reason)"
            try await queue.updateBatch(record)
            logger.warning("batch create unanswered; looking for it before creating again", metadata: ["batch": "\(record.number)", "reason": "\(uncertain.reason)"])
        } catch let refusal as BatchRefusal where refusal.isTokenLimit {
            try await refused(&record, refusal.message)
        } catch let refusal as BatchRefusal {
            record.message = "\(refusal.code): \(refusal.message)"
            try await settle(&record, unfinished: refusal.message, countsAsAttempt: true)
            throw FatalCondition(
                "the provider refused the batch of \(record.fileName) (\(record.rows) rows of \(record.model), file \(fileID)) on target '\(record.target)' (HTTP \(refusal.status) \(refusal.code)): \(refusal.message)"
            )
        }
    }

    /// The enqueued-token quota is full: the same file is created again after a back-off.
    func refused(_ record: inout BatchRecord, _ message: String) async throws {
        record.refusals += 1
        record.phase = .uploaded
        record.batchID = nil
        record.status = nil
        let wait = min(batch.pollInterval * pow(2, Double(min(record.refusals - 1, 10))), 1800)
        record.notBefore = Date().addingTimeInterval(wait)
        record.message = "token_limit_exceeded: \(message)"
        try await queue.updateBatch(record)
        logger.warning(
            "batch refused for the enqueued-token quota; creating it again later",
            metadata: ["batch": "\(record.number)", "wait": "\(Bounded.int(wait))", "refusals": "\(record.refusals)"]
        )
    }

    /// A batch that failed before answering: the quota again, or a file the provider refused.
    func failed(_ record: inout BatchRecord, _ answer: BatchObject) async throws {
        if answer.errors.contains(where: { $0.code == "token_limit_exceeded" }) {
            try await refused(&record, answer.errors.first { $0.code == "token_limit_exceeded" }?.message ?? "")
            return
        }
        let reasons = answer.errors.prefix(3).map { error in
            "\(error.code)\(error.line.map { " (line \($0))" } ?? ""): \(error.message)"
        }
        let reason = reasons.isEmpty ? "no reason given" : reasons.joined(separator: "; ")
        record.message = reason
        try await settle(&record, unfinished: "the batch failed validation: \(reason)", countsAsAttempt: true)
        throw FatalCondition(
            "batch \(answer.id) of \(record.fileName) (\(record.rows) rows of \(record.model), file \(record.fileID ?? "?")) on target '\(record.target)' failed validation: \(reason)"
        )
    }

    func adopt(_ answer: BatchObject, into record: inout BatchRecord) {
        record.batchID = answer.id
        record.phase = .submitted
        record.submittedAt = answer.createdAt ?? Date()
        record.notBefore = nil
        update(&record, from: answer)
    }

    func update(_ record: inout BatchRecord, from answer: BatchObject) {
        record.status = answer.statusText
        record.completed = answer.completed ?? record.completed
        record.failed = answer.failed ?? record.failed
        record.endsBy = answer.expiresAt ?? record.endsBy
        record.outputFileID = answer.outputFileID ?? record.outputFileID
        record.errorFileID = answer.errorFileID ?? record.errorFileID
    }

    func filePath(_ record: BatchRecord, _ suffix: String) -> String {
        (folder as NSString).appendingPathComponent(".\(job.name)-batch-\(record.number).\(suffix)")
    }

    /// Writes the batch's rows as Batch API lines, without a BOM, each under its batch deployment.
    func writeFile(_ record: BatchRecord, to path: String, client: BatchClient) async throws {
        let spec = clients.first { $0.spec.name == record.target }?.spec
        let deployment = batch.deployment(for: record.model, on: spec)
        let url = client.endpoint(for: record.api)
        let writer = try AtomicFileWriter(path: path)
        // A writer not committed removes its temporary file when it goes.
        try await queue.forEachBatchLine(number: record.number) { line in
                var out: [UInt8] = []
                out.append(contentsOf: #"{"custom_id":"#.utf8)
                JSONValue.writeString(BatchResults.customID(line.seq), to: &out)
                out.append(contentsOf: #","method":"POST","url":"#.utf8)
                JSONValue.writeString(url, to: &out)
                out.append(contentsOf: #","body":"#.utf8)
                out.append(contentsOf: TargetPool.Lane.body(line.body, model: line.deployment, as: deployment).utf8)
                out.append(contentsOf: "}\n".utf8)
                writer.write(out)
        }
        try writer.commit()
    }

    // MARK: Collecting

    /// Reads the ended batch's output and error files into its rows; rows it did not finish
    /// go back to pending, counting an attempt.
    func collect(_ record: inout BatchRecord, client: BatchClient) async throws {
        let results = BatchResults(record: record, limits: settings.limits, pooled: job.isPooled)
        var seen = Set<Int64>()
        for fileID in [record.outputFileID, record.errorFileID].compactMap({ $0 }) {
            let path = filePath(record, "\(fileID.prefix(64).filter { $0.isLetter || $0.isNumber || $0 == "-" }).download")
            defer { try? FileManager.default.removeItem(atPath: path) }
            do {
                try await client.download(fileID, to: path)
            } catch is FileGone {
                // Expired or deleted at the provider: its rows are unfinished and go again.
                logger.warning("the provider no longer has a file of the batch; its rows go again", metadata: ["batch": "\(record.number)", "file": "\(fileID)"])
                continue
            }
            let settled = try await results.read(path: path, queue: queue, seen: &seen)
            counters.add(settled)
        }
        let unfinished = "the batch ended \(record.status ?? "") without an answer for this row"
        // A batch this job cancelled (cancel, or auto going online) costs its rows no attempt.
        try await settle(&record, unfinished: unfinished, countsAsAttempt: !record.cancelRequested)
        logger.info("batch collected", metadata: ["batch": "\(record.number)", "id": "\(record.batchID ?? "")", "status": "\(record.status ?? "")"])
    }

    /// Returns every row the batch still holds to pending (failed when out of attempts), and
    /// marks the batch collected.
    func settle(_ record: inout BatchRecord, unfinished message: String, countsAsAttempt: Bool) async throws {
        let results = BatchResults(record: record, limits: settings.limits, pooled: job.isPooled)
        var completions: [Completion] = []
        try await queue.forEachBatchLine(number: record.number) { line in
            completions.append(results.unfinished(line, message: message, countsAsAttempt: countsAsAttempt))
        }
        for chunk in stride(from: 0, to: completions.count, by: 1000) {
            try await queue.complete(Array(completions[chunk..<min(chunk + 1000, completions.count)]), now: Date())
        }
        counters.add(BatchResults.Settled(completions))
        record.phase = .collected
        try await queue.updateBatch(record)
    }

    // MARK: Progress

    func report() async throws {
        guard progress != .none else { return }
        let live = try await queue.batches().filter(\.phase.isLive)
        guard !live.isEmpty else { return }
        let rows = live.reduce(0) { $0 + $1.rows }
        let done = live.reduce(0) { $0 + $1.completed + $1.failed }
        let text = "batches: \(live.count) live, \(done)/\(rows) requests answered at the provider"
        switch progress {
        case .terminal: FileHandle.standardError.write(Data(("\r\u{1B}[2K" + text).utf8))
        case .log: logger.notice("\(text)")
        case .none: break
        }
    }
}

extension BatchEngine: RowEngine {
    func run() async throws -> (RunCounters, StopReason?) {
        let (_, counters, stop) = try await outcome(.run)
        return (counters, stop)
    }
}

/// `engine: auto`: batches first; once only online can meet `finish_by`, the live batches
/// are cancelled and collected, and the online engine sends the rest.
struct AutoEngine: RowEngine {
    let batches: BatchEngine
    let online: Runner
    let control: RunControl

    func run() async throws -> (RunCounters, StopReason?) {
        let (ending, batchCounters, stop) = try await batches.outcome(.run)
        guard ending == .switchToOnline, stop == nil else { return (batchCounters, stop) }
        var (counters, onlineStop) = try await online.run()
        counters.add(batchCounters)
        return (counters, onlineStop)
    }
}

/// The run's counters as the batch engine settles rows; read once at the end.
final class RunCountersBox: Sendable {
    let value = Mutex(RunCounters())

    var snapshot: RunCounters { value.withLock { $0 } }

    func add(_ settled: BatchResults.Settled) {
        value.withLock { counters in
            counters.requests += settled.answered
            counters.succeeded += settled.succeeded
            counters.failed += settled.failed
            counters.promptTokens += settled.promptTokens
            counters.completionTokens += settled.completionTokens
        }
    }
}
