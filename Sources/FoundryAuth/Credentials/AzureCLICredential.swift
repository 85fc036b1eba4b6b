import Foundation

/// Uses the account signed in to the Azure CLI: runs
/// `az account get-access-token --resource https://cognitiveservices.azure.com --output json`.
///
/// The token travels on the child's standard output only, never in an argument.
public struct AzureCLICredential: TokenCredential, CustomStringConvertible {
    let environment: CredentialEnvironment
    let timeout: TimeInterval

    public var name: String { "azure-cli" }
    public var description: String { name }

    public init(environment: CredentialEnvironment = CredentialEnvironment(), timeout: TimeInterval = 15) {
        self.environment = environment
        self.timeout = timeout
    }

    /// The `az` executable on PATH, if any.
    var executable: String? {
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/az"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    public func getToken(scope: String) async throws(AuthError) -> AccessToken {
        guard let az = executable else {
            throw AuthError(.unavailable, credential: name, "the Azure CLI (az) is not on PATH; install it and run az login")
        }
        let resource = scope.hasSuffix("/.default") ? String(scope.dropLast(9)) : scope
        var arguments = ["account", "get-access-token", "--resource", resource, "--output", "json"]
        if let tenant = environment["AZURE_TENANT_ID"] { arguments += ["--tenant", tenant] }
        let result = try await ChildProcess.run(az, arguments: arguments, environment: environment.values, timeout: timeout, credential: name)
        guard result.status == 0 else {
            let text = result.standardError
            if text.contains("az login") || text.contains("Please run") || text.contains("AADSTS70043") || text.contains("expired") {
                throw AuthError(.unavailable, credential: name, "the Azure CLI is not signed in (or its sign-in expired): run az login")
            }
            let line = text.split(separator: "\n").first.map(String.init) ?? "exit status \(result.status)"
            throw AuthError(.rejected, credential: name, "az account get-access-token failed: \(line)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: result.standardOutput) as? [String: Any],
            let token = object["accessToken"] as? String
        else {
            throw AuthError(.network, credential: name, "az account get-access-token printed no accessToken")
        }
        if let expiry = HTTPJSON.expiry(epoch: object["expires_on"]) {
            return try AccessToken.checked(token: token, expiresOn: expiry, credential: name)
        }
        // Older CLIs print only expiresOn, in local time: "2026-11-22 11:32:45.000000".
        if let local = object["expiresOn"] as? String, let date = Self.parseLocal(local) {
            return try AccessToken.checked(token: token, expiresOn: date, credential: name)
        }
        throw AuthError(.network, credential: name, "az account get-access-token printed no expiry")
    }

    static func parseLocal(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .current
        for format in ["yyyy-MM-dd HH:mm:ss.SSSSSS", "yyyy-MM-dd HH:mm:ss"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }
}

/// Runs a child process with a timeout, collecting its output.
enum ChildProcess {
    struct Result {
        var status: Int32
        var standardOutput: Data
        var standardError: String
    }

    static func run(
        _ executable: String, arguments: [String], environment: [String: String], timeout: TimeInterval, credential: String
    ) async throws(AuthError) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw AuthError(.unavailable, credential: credential, "cannot start \(executable): \(error.localizedDescription)")
        }
        let outputTask = BlockingRead.start(output.fileHandleForReading)
        let errorTask = BlockingRead.start(errors.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                throw AuthError(.unavailable, credential: credential, "\((executable as NSString).lastPathComponent) did not answer within \(Int(timeout)) s")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let stdout = await outputTask.value()
        let stderr = await errorTask.value()
        return Result(status: process.terminationStatus, standardOutput: stdout, standardError: String(decoding: stderr, as: UTF8.self))
    }
}

/// Reads a pipe to its end on a thread of its own.
///
/// A blocking read on a Swift concurrency thread would take one of the few cooperative
/// threads (two on a two-core machine) away from the rest of the run.
final class BlockingRead: @unchecked Sendable {
    // Unchecked: `data` is written once by the reader thread before `done` is signalled,
    // and read only after waiting on `done`.
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    static func start(_ handle: FileHandle) -> BlockingRead {
        let read = BlockingRead()
        let thread = Thread {
            read.data = handle.readDataToEndOfFile()
            read.done.signal()
        }
        thread.start()
        return read
    }

    func value() async -> Data {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                self.done.wait()
                continuation.resume(returning: self.data)
            }
            thread.start()
        }
    }
}
