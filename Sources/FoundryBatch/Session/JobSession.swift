import Foundation
import FoundryAuth
import Logging

/// A job opened for one command: its settings resolved once, its queue open, and the
/// service connected while a run needs it. Every command is parse, session, print.
///
/// ``with(job:overrides:_:)`` checks the run's files, opens the state database, runs the
/// command's body and closes the queue on every path. A run connects to the service only
/// after loading (``run(options:control:logger:)`` opens a ``ServiceSession`` and closes it).
///
/// ```swift
/// let summary = try await JobSession.with(job: job, overrides: overrides) { session in
///     _ = try await session.load()
///     return try await session.run(options: RunOptions(), control: control)
/// }
/// ```
public struct JobSession: Sendable {
    public let settings: JobSettings
    public let queue: any RowQueue

    public var job: JobFile { settings.job }
    public var paths: JobPaths { settings.paths }

    /// A session over a queue of the caller's (an in-memory queue, a test's): nothing is
    /// checked and nothing is closed for the caller.
    public init(settings: JobSettings, queue: any RowQueue) {
        self.settings = settings
        self.queue = queue
    }

    /// Resolves `job` with `overrides`, opens its state database, and runs `body`.
    ///
    /// - Throws: ``UsageError`` when two roles name one file or `--date` is not a day
    ///   (exit 2), ``StorageError`` when the state database cannot be opened; whatever
    ///   `body` throws.
    public static func with<T: Sendable>(
        job: JobFile, overrides: JobOverrides = JobOverrides(), _ body: (JobSession) async throws -> T
    ) async throws -> T {
        let settings = try JobSettings.resolve(job: job, overrides: overrides)
        try settings.paths.checkDistinct(job: job.path)
        let queue = try await openQueue(state: settings.paths.state, jobName: job.name)
        defer { queue.close() }
        return try await body(JobSession(settings: settings, queue: queue))
    }

    /// Opens the job's queue: a SQLite file, or a schema in PostgreSQL for a `postgresql://` state.
    ///
    /// `FOUNDRY_BATCH_STATE_PATIENCE` (seconds, default 60) is how long a PostgreSQL state
    /// may stay out of reach before a command stops (exit 3).
    public static func openQueue(
        state: String, jobName: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> any RowQueue {
        guard PostgresLocation.isURL(state) else { return try SQLiteQueue(path: state, jobName: jobName) }
        let location = try PostgresLocation(url: state, jobName: jobName, environment: environment)
        let patience = environment["FOUNDRY_BATCH_STATE_PATIENCE"].flatMap(Double.init).flatMap { $0.isFinite ? max($0, 0) : nil } ?? PostgresQueue.defaultPatience
        return try await PostgresQueue.open(location, jobName: jobName, password: try location.password(environment: environment), patience: patience)
    }

    /// Copies this job's SQLite state (rows, attempts, loads, batches) into a new PostgreSQL
    /// schema at `url` (`state copy`); the SQLite file stays as it was.
    ///
    /// - Throws: ``UsageError`` when the job's state is not a SQLite file or `url` is not a
    ///   PostgreSQL URL; ``StorageError`` when the schema already holds rows.
    public func copyState(to url: String, environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> StateCopyReport {
        guard let source = queue as? SQLiteQueue else {
            throw UsageError("\(job.path): the job's state is already in PostgreSQL; state copy moves a SQLite state")
        }
        guard PostgresLocation.isURL(url) else { throw UsageError("--to must be a postgresql:// URL, got '\(PostgresLocation.redacted(url))'") }
        guard let target = try await Self.openQueue(state: url, jobName: job.name, environment: environment) as? PostgresQueue else {
            throw UsageError("--to must be a postgresql:// URL")
        }
        defer { target.close() }
        return try await target.copy(from: source)
    }

    /// Loads every input file of this run (`load`, and the first step of `run`).
    public func load(skipInvalid: Bool = false) async throws -> [FileLoadReport] {
        try await Loader(job: job, queue: queue).load(files: paths.inputs, skipInvalid: skipInvalid, rejectsPath: paths.rejects)
    }

    /// Writes the results and errors files (`export`, and the last step of `run`).
    public func export() async throws -> ExportReport {
        try await Exporter(queue: queue).export(output: paths.output, errors: paths.errors)
    }

    /// Puts failed rows matching `filter` back in the queue (`retry`). - Returns: how many.
    public func requeue(_ filter: RequeueFilter) async throws -> Int {
        try await queue.requeueFailed(filter)
    }

    /// What `status` shows.
    public func status() async throws -> StatusReport {
        StatusReport(job: job.name, report: try await queue.report(), prices: job.prices)
    }

    /// Writes the HTML report to `path` (default: beside the results file) by temp-and-rename,
    /// so a reader never sees half a page. Safe while a run works on the job: it reads one snapshot.
    /// - Returns: the path written and what the page holds.
    public func report(to path: String? = nil, now: Date = Date()) async throws -> ReportFile {
        let target = path.map { FilePaths.absolute($0, relativeTo: FileManager.default.currentDirectoryPath) } ?? JobPaths.report(of: paths.output)
        var roles = [("the job file", job.path), ("output", paths.output), ("errors", paths.errors), ("the rejects file", paths.rejects)]
        roles += paths.inputs.map { ("input", $0) } + [paths.metrics].compactMap { $0 }.map { ("the metrics file", $0) }
        if !PostgresLocation.isURL(paths.state) {
            // The database's own companions too: a report written over the WAL loses answers.
            roles += ["", "-wal", "-shm", "-journal"].map { ("the state", paths.state + $0) }
        }
        let resolved = (target as NSString).resolvingSymlinksInPath
        for (role, other) in roles where (other as NSString).resolvingSymlinksInPath == resolved {
            throw UsageError("\(job.path): the report would replace \(role) (\(target)); give --output another path")
        }
        if JobPaths.existsAsNonRegular(resolved) {
            throw UsageError("\(job.path): the report's path \(target) exists and is not a regular file; give --output another path")
        }
        let details = try await queue.details(bins: 60, comparisons: HTMLReport.comparedRows, textLimit: HTMLReport.textLimit)
        var page = HTMLReport(
            status: StatusReport(job: job.name, report: details.report, prices: job.prices), details: details, variants: job.variants.map(\.name),
            engine: job.engine, generatedAt: now
        )
        let environment = CredentialEnvironment()
        page.secrets = environment.secrets + job.targets.compactMap { environment[$0.apiKeyEnv] } + [environment["PGPASSWORD"]].compactMap { $0 }

        let html = Array(page.html.utf8)
        try FilePaths.ensureParent(of: target)
        // Through a symlink to the file it names: the rename must not replace the link.
        let writer = try AtomicFileWriter(path: resolved)
        writer.write(html)
        try writer.commit()
        return ReportFile(path: target, bytes: html.count, rows: page.status.counts.total, compared: details.comparisons.count)
    }

    /// Signs in to every target, lists its deployments and probes each deployment the rows
    /// use (`check`). Loads nothing and changes nothing in the queue.
    public func check() async throws -> CheckReport {
        try await ServiceSession.with(job: job, concurrency: 2) { service in
            try await ServiceCheck.run(session: self, service: service)
        }
    }

    /// Cancels the job's live batches at the provider, keeping what they finished; their
    /// other rows return to pending (`cancel`). - Returns: how many batches were live.
    public func cancelBatches(control: RunControl, logger: Logger = Logger(label: "foundry-batch.cancel")) async throws -> Int {
        try await ServiceSession.with(job: job, concurrency: 4) { service in
            try await BatchRun.cancel(session: self, service: service, control: control, logger: logger)
        }
    }

    /// What `run --dry-run` shows: the rows a run would send, and their tokens and cost.
    public func dryRun() async throws -> DryRunReport {
        let report = try await queue.report()
        var batchFiles: [DryRunReport.BatchFiles]?
        if job.engine != .online {
            batchFiles = try await queue.pendingGroups(now: .distantFuture).map { DryRunReport.BatchFiles($0, batch: job.batch) }
        }
        return DryRunReport(
            // A batch run sends the pending rows; those in live batches are at the provider already.
            job: job.name, rows: batchFiles.map { $0.reduce(0) { $0 + $1.rows } } ?? report.pendingRows, promptTokens: report.pendingPromptTokens,
            completionCap: report.pendingCompletionCap, prices: job.prices, batchFiles: batchFiles
        )
    }

    /// Connects to the job's service, sends every pending row, exports, and summarises.
    ///
    /// - Throws: ``UsageError`` or ``FatalCondition`` when the endpoint or its credential
    ///   cannot be set up (nothing was sent); ``StorageError`` from the queue.
    public func run(options: RunOptions, control: RunControl, logger: Logger = Logger(label: "foundry-batch.run")) async throws -> RunSummary {
        try await ServiceSession.with(job: job, concurrency: settings.limits.concurrency) { service in
            try await BatchRun.execute(session: self, service: service, options: options, control: control, logger: logger)
        }
    }
}

/// What `report` wrote.
public struct ReportFile: Sendable, Equatable {
    public var path: String
    public var bytes: Int
    /// Rows of the job the page covers, and rows of a sweep it shows side by side.
    public var rows: Int
    public var compared: Int
}
