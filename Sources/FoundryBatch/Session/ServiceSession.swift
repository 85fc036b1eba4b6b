import AsyncHTTPClient
import Foundation

/// A job's connection to its service, open for the length of one command: the HTTP client,
/// the target with its credential and shared token provider, and, for `endpoint: emulator`,
/// the emulator started in this process.
///
/// The one place where a job file becomes something that sends: ``JobSession/run(options:control:logger:)``
/// and `auth` open one, and ``with(job:concurrency:_:)`` closes everything it opened on every
/// path, thrown errors included.
///
/// ```swift
/// let who = try await ServiceSession.with(job: job, concurrency: 1) { service in
///     try await AuthReport.describe(service.target)
/// }
/// ```
public struct ServiceSession: Sendable {
    /// The run's client: redirects off, HTTP/2 when offered, pooled for `concurrency`.
    public let http: HTTPClient
    /// Where requests go and how they are authorised.
    public let target: ServiceTarget

    /// A service of the caller's own (a test server, a client shared with other work):
    /// closing the client and the credential stays the caller's.
    public init(http: HTTPClient, target: ServiceTarget) {
        self.http = http
        self.target = target
    }

    /// Opens the job's endpoint, runs `body`, and closes the emulator, the temporary
    /// credential files and the HTTP client, whatever `body` does.
    ///
    /// - Throws: ``UsageError`` or ``FatalCondition`` when the endpoint or its credential
    ///   cannot be set up; whatever `body` throws.
    public static func with<T: Sendable>(
        job: JobFile, concurrency: Int, _ body: (ServiceSession) async throws -> T
    ) async throws -> T {
        let http = HTTPClient.forRun(concurrency: concurrency)
        let endpoint: ServiceEndpoint
        do {
            endpoint = try await ServiceEndpoint.open(job: job, http: http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(ServiceSession(http: http, target: endpoint.target)))
        } catch {
            result = .failure(error)
        }
        await endpoint.close()
        try? await http.shutdown()
        return try result.get()
    }
}
