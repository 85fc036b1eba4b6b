/// The process exit codes of `foundry-batch`, part of the contract with cron and scripts.
public enum ExitStatus: Int32, Sendable, CustomStringConvertible {
    /// Every row succeeded.
    case success = 0
    /// The run finished; some rows failed permanently and are in the errors file.
    case rowsFailed = 1
    /// Bad usage, job file or input: nothing was sent.
    case badInput = 2
    /// Stopped by a condition every row would hit; rows stay pending for a later run.
    case stopped = 3
    /// Requests were sent, then the state database or an output file could not be written.
    /// Answers already committed are safe in the state database; fix the disk or folder and
    /// run again (or `export`).
    case storageFailed = 4
    /// `run --no-wait`: batches still run at the provider; run again to collect them
    /// (EX_TEMPFAIL, which cron wrappers read as "try again later").
    case batchesRunning = 75
    /// Interrupted by SIGINT or SIGTERM; in-flight rows were released.
    case interrupted = 130

    public var description: String {
        switch self {
        case .success: "success"
        case .rowsFailed: "some rows failed"
        case .badInput: "bad usage, job file or input"
        case .stopped: "stopped"
        case .storageFailed: "storage failed after sending"
        case .batchesRunning: "batches still running"
        case .interrupted: "interrupted"
        }
    }
}

/// An error that a user reads: it says what happened, where, and what to do.
///
/// The CLI prints `description` (never a stack trace) and exits with `exitStatus`.
public protocol UserFacingError: Error, CustomStringConvertible {
    var exitStatus: ExitStatus { get }
}

/// A problem with the job file: the file, the line and the key, and what is wrong.
public struct JobFileError: UserFacingError, Equatable {
    public var file: String
    public var line: Int?
    public var key: String?
    public var message: String
    public var exitStatus: ExitStatus { .badInput }

    public init(file: String, line: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var place = file
        if let line { place += ":\(line)" }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}

/// A problem with an input file, with `file:line:` as compilers print it.
public struct InputError: UserFacingError, Equatable {
    public var file: String
    public var line: Int?
    public var message: String
    public var exitStatus: ExitStatus { .badInput }

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// A problem with the state database or an output file: which file, and what to do.
///
/// Before anything is sent it is bad input (exit 2); once requests went out it is
/// ``ExitStatus/storageFailed`` (exit 4), see ``afterSending()``.
public struct StorageError: UserFacingError, Equatable {
    public var path: String
    public var message: String
    public private(set) var exitStatus: ExitStatus = .badInput

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// The same failure met after requests were sent: exit 4, with what is safe and what to do.
    public func afterSending() -> StorageError {
        guard exitStatus != .storageFailed else { return self }
        var error = self
        error.exitStatus = .storageFailed
        error.message += "\nRequests were sent before this failed; every answer committed is safe in the state database. Fix the disk or folder, then run the job again (or foundry-batch export)."
        return error
    }

    public var description: String { "\(path): \(message)" }
}

/// Bad command-line usage that the argument parser could not catch (a bad `--date`, say).
public struct UsageError: UserFacingError {
    public var message: String
    public var exitStatus: ExitStatus { .badInput }
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
