import Foundation

/// What the command line changes about a job file for one command.
///
/// Paths are taken relative to the working directory, as a shell user expects; the job
/// file's own paths are relative to its folder.
public struct JobOverrides: Sendable, Equatable {
    /// The `YYYY-MM-DD` that `{date}` stands for (default today, local time).
    public var date: String?
    /// Input files instead of the job's `input:`.
    public var inputs: [String] = []
    public var output: String?
    public var errors: String?
    public var state: String?
    /// `--metrics-file`: instead of the job's `metrics_file:`.
    public var metricsFile: String?
    /// `--concurrency`: workers instead of `limits.concurrency`.
    public var concurrency: Int?
    /// `--max-attempts`: tries per row instead of `limits.max_attempts`.
    public var maxAttempts: Int?

    public init(
        date: String? = nil, inputs: [String] = [], output: String? = nil, errors: String? = nil, state: String? = nil,
        concurrency: Int? = nil, maxAttempts: Int? = nil
    ) {
        (self.date, self.inputs, self.output, self.errors, self.state) = (date, inputs, output, errors, state)
        (self.concurrency, self.maxAttempts) = (concurrency, maxAttempts)
    }
}

/// A job file with the command line's overrides applied, once: the files of this run and
/// the limits it runs under. Everything after this reads the settings, never the overrides.
public struct JobSettings: Sendable {
    /// The job file as written (its `limits` without the overrides: read ``limits``).
    public let job: JobFile
    /// This run's files: placeholders expanded, paths absolute.
    public let paths: JobPaths
    /// `limits:` with `--concurrency` and `--max-attempts` applied.
    public let limits: JobFile.Limits

    public var name: String { job.name }

    /// Settings from parts already resolved: for tests and embedders.
    public init(job: JobFile, paths: JobPaths, limits: JobFile.Limits? = nil) {
        self.job = job
        self.paths = paths
        self.limits = limits ?? job.limits
    }

    /// Resolves `job` with `overrides`. Opens and checks nothing on disk
    /// (``JobSession/with(job:overrides:_:)`` does).
    ///
    /// - Throws: ``UsageError`` for a `--date` that is not a day.
    public static func resolve(job: JobFile, overrides: JobOverrides = JobOverrides()) throws(UsageError) -> JobSettings {
        var paths = try job.resolve(date: overrides.date)
        let cwd = FileManager.default.currentDirectoryPath
        if !overrides.inputs.isEmpty { paths.inputs = overrides.inputs.map { FilePaths.absolute($0, relativeTo: cwd) } }
        if let output = overrides.output {
            paths.output = FilePaths.absolute(output, relativeTo: cwd)
            let companions = JobPaths.companions(of: paths.output)
            if job.errors == nil { paths.errors = companions.errors }
            paths.rejects = companions.rejects
        }
        if let errors = overrides.errors { paths.errors = FilePaths.absolute(errors, relativeTo: cwd) }
        if let state = overrides.state { paths.state = PostgresLocation.isURL(state) ? state : FilePaths.absolute(state, relativeTo: cwd) }
        if let metrics = overrides.metricsFile { paths.metrics = FilePaths.absolute(metrics, relativeTo: cwd) }
        var limits = job.limits
        if let concurrency = overrides.concurrency { limits.concurrency = concurrency }
        if let maxAttempts = overrides.maxAttempts { limits.maxAttempts = maxAttempts }
        return JobSettings(job: job, paths: paths, limits: limits)
    }
}
