import AsyncHTTPClient
import Foundation

/// A job's connection to its service, open for the length of one command: the HTTP client,
/// the target with its credential and shared token provider, and, for `endpoint: emulator`,
/// the emulator started in this process.
///
/// The one place where a job file becomes something that sends: every command that talks
/// to the service opens a session, and ``with(job:concurrency:_:)`` closes everything it
/// opened on every path, thrown errors included.
///
/// ```swift
/// let summary = try await JobSession.with(job: context.job, concurrency: 16) { session in
///     try await BatchRun.execute(context: context, session: session, options: options, control: control)
/// }
/// ```
public struct JobSession: Sendable {
    public let job: JobFile
    /// The run's client: redirects off, HTTP/2 when offered, pooled for `concurrency`.
    public let http: HTTPClient
    /// Where requests go and how they are authorised.
    public let target: ServiceTarget

    /// Opens the job's endpoint, runs `body`, and closes the emulator, the temporary
    /// credential files and the HTTP client, whatever `body` does.
    ///
    /// - Throws: ``UsageError`` or ``FatalCondition`` when the endpoint or its credential
    ///   cannot be set up; whatever `body` throws.
    public static func with<T: Sendable>(
        job: JobFile, concurrency: Int, _ body: (JobSession) async throws -> T
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
            result = .success(try await body(JobSession(job: job, http: http, target: endpoint.target)))
        } catch {
            result = .failure(error)
        }
        await endpoint.close()
        try? await http.shutdown()
        return try result.get()
    }
}
