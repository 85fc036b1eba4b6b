import FoundryEmulator
import Foundation
import Testing

/// Runs the built `foundry-batch` binary as a user would, in a folder of its own.
final class CLI: Sendable {
    static let binary: String = {
        var folder = URL(fileURLWithPath: #filePath)
        while folder.path != "/" {
            folder.deleteLastPathComponent()
            let candidate = folder.appendingPathComponent(".build/debug/foundry-batch").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "foundry-batch"
    }()

    static let repository: String = {
        URL(fileURLWithPath: binary).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }()

    let folder: String
    let environment: [String: String]

    init(environment: [String: String] = [:]) {
        folder = NSTemporaryDirectory() + "foundry-batch-e2e-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var base = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": folder, "TZ": "UTC"]
        base.merge(environment) { $1 }
        self.environment = base
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    func path(_ name: String) -> String { folder + "/" + name }

    func write(_ name: String, _ text: String) {
        let target = path(name)
        try? FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: target, contents: Data(text.utf8))
    }

    func read(_ name: String) -> String { (try? String(contentsOfFile: path(name), encoding: .utf8)) ?? "" }

    func lines(_ name: String) -> [[String: Any]] {
        read(name).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any]) ?? [:] }
    }

    /// Starts the binary; the caller waits, signals or kills it.
    ///
    /// Output goes to files, not pipes: reading a pipe blocks a thread, and the emulator
    /// serving the child lives in this test process and needs every thread it has.
    func start(_ arguments: [String]) throws -> (Process, String, String) {
        try Self.launch(Self.binary, arguments, in: folder, environment: environment)
    }

    /// Starts any program with its output going to two new files; ``finish(_:_:_:timeout:)`` reads them.
    static func launch(_ program: String, _ arguments: [String], in folder: String? = nil, environment: [String: String]? = nil) throws
        -> (Process, String, String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        if let folder { process.currentDirectoryURL = URL(fileURLWithPath: folder) }
        if let environment { process.environment = environment }
        let name = UUID().uuidString
        let out = NSTemporaryDirectory() + "e2e-\(name).out", err = NSTemporaryDirectory() + "e2e-\(name).err"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return (process, out, err)
    }

    /// Runs the binary to completion (at most `timeout` seconds).
    @discardableResult
    func run(_ arguments: String..., timeout: TimeInterval = 120) async throws -> Result {
        let (process, out, err) = try start(arguments)
        return try await Self.finish(process, out, err, timeout: timeout)
    }

    static func finish(_ process: Process, _ out: String, _ err: String, timeout: TimeInterval = 120) async throws -> Result {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                Issue.record("foundry-batch did not finish within \(Int(timeout)) s")
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        while process.isRunning { try await Task.sleep(for: .milliseconds(5)) }
        defer {
            try? FileManager.default.removeItem(atPath: out)
            try? FileManager.default.removeItem(atPath: err)
        }
        return Result(
            status: process.terminationStatus, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        )
    }
}

extension CLI {
    /// Checks that the results file `file` holds exactly one line per row of `prompts`-style
    /// input (`rN` asks "Prompt N"), each with that row's own answer.
    func expectExactlyOnce(_ file: String, rows: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let lines = lines(file)
        let ids = lines.compactMap { $0["custom_id"] as? String }
        #expect(ids.count == rows, "\(ids.count) result lines", sourceLocation: sourceLocation)
        #expect(Set(ids).count == rows, "a row appears twice", sourceLocation: sourceLocation)
        for line in lines {
            let id = line["custom_id"] as? String ?? ""
            let body = (line["response"] as? [String: Any])?["body"] as? [String: Any]
            let content = ((body?["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
            #expect(content == EmulatorAnswer.text(for: "Prompt \(id.dropFirst())"), sourceLocation: sourceLocation)
        }
    }
}

