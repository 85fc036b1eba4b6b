import Foundation
import Logging

/// What loading one input file did.
public struct FileLoadReport: Sendable, Equatable {
    public var path: String
    public var lines = 0
    /// Queue rows added (lines x variants).
    public var inserted = 0
    /// Rows already in the queue with the same content.
    public var unchanged = 0
    /// Lines rejected under `--skip-invalid`.
    public var rejected = 0
}

/// Reads JSONL inputs into the queue: streaming, all-or-nothing per file, idempotent.
///
/// An invalid line (not JSON, not an object, no prompt, invalid UTF-8, a repeated id, an id
/// loaded before with other content) fails the whole file with `file:line: reason` and adds
/// nothing, unless `skipInvalid`, which writes the rejects to a file and loads the rest.
public struct Loader: Sendable {
    public var job: JobFile
    public var queue: any RowQueue
    public var logger: Logger

    public init(job: JobFile, queue: any RowQueue, logger: Logger = Logger(label: "foundry-batch.load")) {
        self.job = job
        self.queue = queue
        self.logger = logger
    }

    /// Loads each file in turn.
    ///
    /// - Parameters:
    ///   - rejectsPath: where `skipInvalid` writes rejected lines (`{"source", "error", "line"}`).
    /// - Throws: ``InputError`` for the first bad line (and nothing of that file is loaded),
    ///   ``StorageError`` when the state database fails.
    public func load(files: [String], skipInvalid: Bool = false, rejectsPath: String? = nil) async throws -> [FileLoadReport] {
        var rejects: RejectsWriter? = nil
        if skipInvalid, let rejectsPath { rejects = try RejectsWriter(path: rejectsPath) }
        var reports: [FileLoadReport] = []
        for file in files {
            reports.append(try await load(file: file, rejects: &rejects))
        }
        try rejects?.commit()
        return reports
    }

    func load(file: String, rejects: inout RejectsWriter?) async throws -> FileLoadReport {
        // Default ids name the file by its path from the job's folder, so that a/data.jsonl
        // and b/data.jsonl in one job do not collide.
        let name = FilePaths.relative(file, to: job.directory)
        let builder = RequestBuilder(job: job)
        let arms = builder.arms
        let splice = PromptSplice(job: job, builder: builder)
        let skipping = rejects != nil
        let rejectsStart = rejects?.size ?? 0

        let report = try await queue.withLoad(source: file) { transaction in
            // From the top each time: a queue that lost its transaction runs this again.
            var reader = try LineReader(path: file)
            var report = FileLoadReport(path: file)
            rejects?.truncate(to: rejectsStart)
            // Lines wait in `chunk` until the queue takes their rows at once (a database a
            // round trip away); a store that takes a row at a time sees each line alone.
            var chunk = LoadChunk()
            func flush() throws {
                let dispositions = try transaction.add(chunk.rows)
                for line in chunk.lines {
                    let problem = line.problem ?? Self.problem(chunk.rows[line.rows], dispositions[line.rows], report: &report)
                    guard let problem else { continue }
                    guard skipping else { throw InputError(file: file, line: line.number, message: problem) }
                    // Written at once: holding rejects would keep each line's bytes (and the
                    // reader's buffer under them) until the end of the file.
                    rejects?.write(source: "\(file):\(line.number)", error: problem, line: line.bytes)
                    report.rejected += 1
                }
                chunk.removeAll()
            }
            while let bytes = reader.next() {
                let number = reader.lineNumber
                report.lines = number
                if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                let source = "\(file):\(number)"
                var rows: [NewRow] = []
                var problem: String?
                if let spliced = splice?.rows(bytes, defaultID: { "\(name):\(number)" }, source: source) {
                    rows = spliced
                } else {
                    switch InputLine.parse(bytes, defaultID: "\(name):\(number)") {
                    case .failure(let failure): problem = failure.message
                    case .success(let line):
                        switch build(line, source: source, builder: builder, arms: arms) {
                        case .success(let built): rows = built
                        case .failure(let refusal): problem = refusal.message
                        }
                    }
                }
                // A line's bytes are kept only for the rejects file, and copied out of the
                // reader's buffer when they must outlive the next line.
                let kept: ArraySlice<UInt8> = skipping ? (transaction.chunkSize > 1 ? ArraySlice(Array(bytes)) : bytes) : []
                chunk.append(number: number, bytes: kept, problem: problem, rows: rows)
                if chunk.rows.count >= transaction.chunkSize || chunk.lines.count >= transaction.chunkSize { try flush() }
            }
            try flush()
            return report
        }
        logger.info(
            "loaded input",
            metadata: ["file": "\(file)", "inserted": "\(report.inserted)", "unchanged": "\(report.unchanged)", "rejected": "\(report.rejected)"]
        )
        return report
    }

    /// One line's rows (one per variant), or why the line cannot be loaded; a problem
    /// instead of a throw, so that `--skip-invalid` can reject the line and go on.
    func build(_ line: InputLine, source: String, builder: RequestBuilder, arms: [JobFile.Variant]) -> Result<[NewRow], LineProblem> {
        let hash = line.contentHash
        let metadata = line.metadata.isEmpty ? nil : JSONValue.object(line.metadata).jsonText
        var rows: [NewRow] = []
        for arm in arms {
            switch builder.build(line, variant: arm) {
            case .failure(let problem): return .failure(problem)
            case .success(let request):
                // Found at load, not mid-run: a row that no target may take would stop the run.
                guard job.targets.isEmpty || job.targets.contains(where: { $0.serves(request.deployment) }) else {
                    return .failure(LineProblem("model '\(request.deployment)' is served by no target (see the targets' models: in the job file)"))
                }
                let estimate = RequestBuilder.estimatedTokens(request.body)
                rows.append(
                    NewRow(
                        id: line.id, variant: arm.name, source: source, api: request.api, deployment: request.deployment,
                        body: request.body.jsonText, metadata: metadata, estimatedTokens: estimate.total,
                        estimatedPromptTokens: estimate.prompt, contentHash: hash
                    )
                )
            }
        }
        return .success(rows)
    }

    /// Counts what the queue did with one line's rows; returns why the line is refused at
    /// the first row that could not go in (the loader then rolls the file back, or rejects the line).
    static func problem(_ rows: ArraySlice<NewRow>, _ dispositions: ArraySlice<LoadDisposition>, report: inout FileLoadReport) -> String? {
        for (row, disposition) in zip(rows, dispositions) {
            switch disposition {
            case .inserted: report.inserted += 1
            case .unchanged: report.unchanged += 1
            case .duplicate(let first):
                return "duplicate id '\(row.id)' (first at \(shortSource(first)))"
            case .conflict(let earlier):
                return "id '\(row.id)' was loaded before from \(shortSource(earlier)) with different content; give the changed line a new id or use a new state file"
            }
        }
        return nil
    }

    static func shortSource(_ source: String) -> String {
        (source as NSString).lastPathComponent
    }
}

/// Writes rejected lines beside the output, to a temporary name renamed on commit.
struct RejectsWriter {
    let file: AtomicFileWriter

    init(path: String) throws {
        file = try AtomicFileWriter(path: path)
    }

    func write(source: String, error: String, line: ArraySlice<UInt8>) {
        var pairs: [(String, JSONValue)] = [("source", .string(source)), ("error", .string(error))]
        if let text = String(validating: line, as: UTF8.self) { pairs.append(("line", .string(text))) }
        var bytes: [UInt8] = []
        JSONValue.object(pairs).write(to: &bytes)
        bytes.append(0x0A)
        file.write(bytes)
    }

    func commit() throws { try file.commit() }

    /// Bytes written so far: a load that starts over goes back there.
    var size: Int { file.size }
    func truncate(to size: Int) { file.truncate(to: size) }
}

/// Lines read but not yet handed to the queue, with their rows laid end to end.
struct LoadChunk {
    struct Line {
        var number: Int
        var bytes: ArraySlice<UInt8>
        /// Known before the queue sees the line (not JSON, no prompt, ...).
        var problem: String?
        var rows: Range<Int>
    }

    var lines: [Line] = []
    var rows: [NewRow] = []

    /// Empties the chunk, keeping its storage for the next lines.
    mutating func removeAll() {
        lines.removeAll(keepingCapacity: true)
        rows.removeAll(keepingCapacity: true)
    }

    mutating func append(number: Int, bytes: ArraySlice<UInt8>, problem: String?, rows more: [NewRow]) {
        let start = rows.count
        if problem == nil { rows += more }
        lines.append(Line(number: number, bytes: bytes, problem: problem, rows: start..<rows.count))
    }
}
