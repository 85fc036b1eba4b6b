import AsyncHTTPClient
import FoundryAuth
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
    /// One target of the job, open: what the job file says of it and where its requests go.
    public struct Connected: Sendable {
        public let spec: JobFile.Target
        public let target: ServiceTarget
    }

    /// The run's client: redirects off, HTTP/2 when offered, pooled for `concurrency`.
    public let http: HTTPClient
    /// The clients rows are sent on: `http` and, for a run of more than
    /// ``HTTPClient/rowsPerClient`` workers, more of its kind (``HTTPClient/forRows(concurrency:first:)``).
    public let rowClients: [HTTPClient]
    /// The job's targets, in the job file's order (one when it has no `targets:`).
    public let targets: [Connected]
    /// Whether the job names its own `targets:` (rather than one endpoint).
    public let isPooled: Bool

    /// The first target: the only one of a job without `targets:`.
    public var target: ServiceTarget { targets[0].target }

    /// A service of the caller's own (a test server, a client shared with other work), as the
    /// one target of a job without `targets:`: closing the client and the credential stays
    /// the caller's.
    public init(http: HTTPClient, target: ServiceTarget) {
        self.http = http
        rowClients = [http]
        isPooled = false
        targets = [Connected(spec: JobFile.Target(name: "default", endpoint: .url(target.baseURL), auth: .none), target: target)]
    }

    /// Several targets of the caller's, each with its job-file entry.
    public init(http: HTTPClient, targets: [(JobFile.Target, ServiceTarget)], isPooled: Bool = true, rowClients: [HTTPClient]? = nil) {
        self.http = http
        self.rowClients = rowClients ?? [http]
        self.isPooled = isPooled
        self.targets = targets.map { Connected(spec: $0.0, target: $0.1) }
    }

    /// Opens every target of the job, runs `body`, and closes the emulators, the temporary
    /// credential files and the HTTP client, whatever `body` does.
    ///
    /// - Throws: ``UsageError``, ``JobFileError`` or ``FatalCondition`` when an endpoint or
    ///   its credential cannot be set up; whatever `body` throws.
    public static func with<T: Sendable>(
        job: JobFile, concurrency: Int, _ body: (ServiceSession) async throws -> T
    ) async throws -> T {
        let http = HTTPClient.forRun(concurrency: concurrency)
        let rowClients = HTTPClient.forRows(concurrency: concurrency, first: http)
        let credentials = CredentialCache()
        var endpoints: [(JobFile.Target, ServiceEndpoint)] = []
        func close() async {
            for (_, endpoint) in endpoints { await endpoint.close() }
            for client in rowClients { try? await client.shutdown() }
        }
        do {
            for spec in job.targetsToUse {
                endpoints.append((spec, try await ServiceEndpoint.open(spec, job: job, http: http, credentials: credentials)))
            }
        } catch {
            await close()
            throw error
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(ServiceSession(http: http, targets: endpoints.map { ($0.0, $0.1.target) }, isPooled: job.isPooled, rowClients: rowClients)))
        } catch {
            result = .failure(error)
        }
        await close()
        return try result.get()
    }
}
