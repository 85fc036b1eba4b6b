import Foundation

/// A job opened for one command: the job file, this run's paths, and its queue.
public struct JobContext: Sendable {
    public var job: JobFile
    public var paths: JobPaths
    public var queue: SQLiteQueue

    /// Command-line overrides of the job file's paths.
    public struct Overrides: Sendable {
        public var date: String?
        public var inputs: [String] = []
        public var output: String?
        public var errors: String?
        public var state: String?
        public init(date: String? = nil, inputs: [String] = [], output: String? = nil, errors: String? = nil, state: String? = nil) {
            self.date = date
            self.inputs = inputs
            self.output = output
            self.errors = errors
            self.state = state
        }
    }

    /// Reads the job file, applies overrides (relative to the working directory, as a shell
    /// user expects) and opens the state database.
    public static func open(jobPath: String, overrides: Overrides = Overrides()) throws -> JobContext {
        try open(job: try JobFile.load(path: jobPath), overrides: overrides)
    }

    /// Like ``open(jobPath:overrides:)``, for a job file already read.
    ///
    /// - Throws: ``UsageError`` when two roles name one file (exit 2), ``StorageError``
    ///   when the state database cannot be opened.
    public static func open(job: JobFile, overrides: Overrides = Overrides()) throws -> JobContext {
        let paths = try paths(job: job, overrides: overrides)
        try paths.checkDistinct(job: job.path)
        let queue = try SQLiteQueue(path: paths.state, jobName: job.name)
        return JobContext(job: job, paths: paths, queue: queue)
    }

    /// This run's files: the job's, with the command line's overrides. Opens and checks
    /// nothing (``open(job:overrides:)`` checks them).
    public static func paths(job: JobFile, overrides: Overrides = Overrides()) throws -> JobPaths {
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
        if let state = overrides.state { paths.state = FilePaths.absolute(state, relativeTo: cwd) }
        return paths
    }

    /// Loads every input file of this run.
    public func load(skipInvalid: Bool = false) throws -> [FileLoadReport] {
        try Loader(job: job, queue: queue).load(files: paths.inputs, skipInvalid: skipInvalid, rejectsPath: paths.rejects)
    }

    /// Writes the results and errors files.
    public func export() throws -> ExportReport {
        try Exporter(queue: queue).export(output: paths.output, errors: paths.errors)
    }
}
