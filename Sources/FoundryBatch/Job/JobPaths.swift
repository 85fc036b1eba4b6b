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
}

extension JobFile {
    /// Expands `{date}` and `{name}` and resolves every path against the job file's folder.
    ///
    /// - Parameter date: `YYYY-MM-DD` from `--date`; `nil` means today in the local time zone.
    public func resolve(date: String? = nil, now: Date = Date()) throws(UsageError) -> JobPaths {
        let day = try date.map { text throws(UsageError) in try Self.validate(date: text) } ?? Self.today(now: now)
        func expand(_ template: String) -> String {
            let text = template.replacingOccurrences(of: "{date}", with: day).replacingOccurrences(of: "{name}", with: name)
            return FilePaths.absolute(text, relativeTo: directory)
        }
        let output = expand(self.output ?? "out/{name}.jsonl")
        let stem = output.hasSuffix(".jsonl") ? String(output.dropLast(6)) : output
        return JobPaths(
            inputs: inputs.map(expand),
            output: output,
            errors: self.errors.map(expand) ?? stem + ".errors.jsonl",
            state: expand(self.state ?? ".foundry-batch/{name}.sqlite"),
            rejects: stem + ".rejects.jsonl",
            date: day
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
