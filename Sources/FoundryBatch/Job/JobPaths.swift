import Foundation

/// The concrete files of one run of a job: placeholders expanded, paths absolute.
public struct JobPaths: Sendable, Equatable {
    public var inputs: [String]
    public var output: String
    public var errors: String
    public var state: String
    /// Where `--skip-invalid` writes the lines it rejected.
    public var rejects: String
    /// The `YYYY-MM-DD` that `{date}` stood for.
    public var date: String
    /// Where `run` writes Prometheus metrics (`--metrics-file`, `metrics_file:`); nil: none.
    public var metrics: String? = nil
}

extension JobPaths {
    /// The errors and rejects files that go with a results file: `out/r.jsonl` ->
    /// `out/r.errors.jsonl`, `out/r.rejects.jsonl`. The one place these names are made.
    public static func companions(of output: String) -> (errors: String, rejects: String) {
        let stem = output.hasSuffix(".jsonl") ? String(output.dropLast(6)) : output
        return (stem + ".errors.jsonl", stem + ".rejects.jsonl")
    }

    /// Where `report` writes when not told: beside the results file, `out/r.jsonl` -> `out/r.report.html`.
    public static func report(of output: String) -> String {
        (output.hasSuffix(".jsonl") ? String(output.dropLast(6)) : output) + ".report.html"
    }

    /// Refuses two roles for one file: `errors:` equal to `output:` would make the two
    /// exports overwrite each other, and an input equal to an output would be replaced by
    /// the results.
    ///
    /// An output that exists as a folder or a device is refused too: a rename would replace it.
    ///
    /// - Throws: ``UsageError`` (exit 2) naming the roles and the path.
    public func checkDistinct(job: String) throws(UsageError) {
        var roles: [(String, String)] = [("the job file", job), ("output", output), ("errors", errors)]
        if !PostgresLocation.isURL(state) { roles.append(("state", state)) }
        roles += [("the rejects file", rejects)]
        if let metrics { roles.append(("the metrics file", metrics)) }
        roles += inputs.map { ("input", $0) }
        var seen: [String: String] = [:]
        for (role, path) in roles {
            let key = (path as NSString).resolvingSymlinksInPath
            if let earlier = seen[key] {
                if earlier == "input", role == "input" { continue }
                throw UsageError("\(job): \(earlier) and \(role) are the same file (\(path)); give each its own path")
            }
            if role != "input", role != "the job file", Self.existsAsNonRegular(path) {
                throw UsageError("\(job): \(role) \(path) exists and is not a regular file (a folder or a device); choose another path")
            }
            seen[key] = role
        }
    }

    /// Whether `path` exists as something a rename must not replace: a folder, a device, a socket.
    static func existsAsNonRegular(_ path: String) -> Bool {
        guard let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType else { return false }
        return type != .typeRegular
    }

    /// Creates the folders of the results and errors files and checks that files can be
    /// written there, before anything is sent: a run must not spend its requests and then
    /// find it cannot write the answers out.
    ///
    /// - Throws: ``StorageError`` (exit 2, nothing was sent) naming the folder.
    public func checkWritable() throws(StorageError) {
        for path in [output, errors] + [metrics].compactMap({ $0 }) {
            try FilePaths.ensureParent(of: path)
            try AtomicFileWriter.probe(folderOf: path)
        }
    }
}

extension JobFile {
    /// Expands `{date}` and `{name}` and resolves every path against the job file's folder.
    ///
    /// - Parameter date: `YYYY-MM-DD` from `--date`; `nil` means today in the local time zone.
    public func resolve(date: String? = nil, now: Date = Date()) throws(UsageError) -> JobPaths {
        let day = try date.map { text throws(UsageError) in try Self.validate(date: text) } ?? Self.today(now: now)
        func placeholders(_ template: String) -> String {
            template.replacingOccurrences(of: "{date}", with: day).replacingOccurrences(of: "{name}", with: name)
        }
        func expand(_ template: String) -> String { FilePaths.absolute(placeholders(template), relativeTo: directory) }
        let output = expand(self.output ?? "out/{name}.jsonl")
        let companions = JobPaths.companions(of: output)
        return JobPaths(
            inputs: inputs.map(expand),
            output: output,
            errors: self.errors.map(expand) ?? companions.errors,
            state: self.state.map { PostgresLocation.isURL($0) ? placeholders($0) : expand($0) } ?? expand(".foundry-batch/{name}.sqlite"),
            rejects: companions.rejects,
            date: day,
            metrics: metricsFile.map(expand)
        )
    }

    static func today(now: Date) -> String {
        let parts = Calendar.current.dateComponents(in: TimeZone.current, from: now)
        return String(format: "%04d-%02d-%02d", parts.year ?? 1970, parts.month ?? 1, parts.day ?? 1)
    }

    static func validate(date text: String) throws(UsageError) -> String {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1...12).contains(month), (1...31).contains(day), year > 0
        else {
            throw UsageError("--date must be YYYY-MM-DD, got '\(text)'")
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        guard let date = calendar.date(from: DateComponents(year: year, month: month, day: day)),
            calendar.component(.day, from: date) == day
        else {
            throw UsageError("--date \(text) is not a day of the calendar")
        }
        return text
    }
}

/// Path arithmetic shared by the job file, the loader and the exporter.
public enum FilePaths {
    /// `path` made absolute against `base` and normalised (`a/./b/../c` -> `a/c`).
    public static func absolute(_ path: String, relativeTo base: String) -> String {
        let expanded = (path as NSString).expandingTildeInPath
        let joined = expanded.hasPrefix("/") ? expanded : (base as NSString).appendingPathComponent(expanded)
        return (joined as NSString).standardizingPath
    }

    /// `path` relative to the folder `base` (`a/data.jsonl`, `../in/data.jsonl`), both absolute.
    public static func relative(_ path: String, to base: String) -> String {
        let target = (path as NSString).standardizingPath.split(separator: "/", omittingEmptySubsequences: true)
        let from = (base as NSString).standardizingPath.split(separator: "/", omittingEmptySubsequences: true)
        var common = 0
        while common < min(target.count, from.count), target[common] == from[common] { common += 1 }
        let parts = Array(repeating: "..", count: from.count - common) + target[common...].map(String.init)
        return parts.isEmpty ? (path as NSString).lastPathComponent : parts.joined(separator: "/")
    }

    /// Creates the parent folder of `path` when it is missing.
    public static func ensureParent(of path: String) throws(StorageError) {
        let parent = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw StorageError(path: parent, message: "cannot create the folder: \(error.localizedDescription)")
        }
    }
}
