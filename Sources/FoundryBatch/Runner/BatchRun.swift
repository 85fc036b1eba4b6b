import AsyncHTTPClient
import FoundryAuth
import Foundation
import Logging

extension ServiceTarget {
    /// The target of a job whose endpoint is a URL: its credential from the environment.
    ///
    /// - Throws: ``UsageError`` for a plain-http endpoint on another machine with a
    ///   credential; ``FatalCondition`` when the credential is not set up.
    public static func resolve(job: JobFile, baseURL: String, environment: CredentialEnvironment, http: HTTPClient) throws -> ServiceTarget {
        if job.auth != .none, let url = URL(string: baseURL), !TransportSecurity.maySendSecret(to: url) {
            throw UsageError(
                "\(job.path): endpoint: \(baseURL) is plain http to another machine; a key or token is never sent that way. Use https (or http to localhost)."
            )
        }
        let authorization: RequestAuthorization
        switch job.auth {
        case .none:
            authorization = .none
        case .apiKey:
            guard let key = environment["AZURE_OPENAI_API_KEY"] else {
                throw FatalCondition("auth: api-key needs the key in AZURE_OPENAI_API_KEY (Keys and Endpoint of the resource)")
            }
            guard TransportSecurity.isHeaderSafe(key) else {
                throw FatalCondition(
                    "AZURE_OPENAI_API_KEY holds a character that cannot go in an HTTP header (a space, a line break, a non-ASCII character); copy the key again from Keys and Endpoint of the resource"
                )
            }
            authorization = .apiKey(key)
        default:
            do {
                let credential = try CredentialFactory.make(kind: job.auth, environment: environment, http: http)
                authorization = .bearer(TokenProvider(credential: credential))
            } catch {
                throw FatalCondition("auth: \(job.auth.rawValue): \(error.description)")
            }
        }
        return ServiceTarget(baseURL: baseURL, apiVersion: job.apiVersion, authorization: authorization)
    }

    /// Token requests made so far by this target's provider.
    public var tokenRequests: Int {
        get async {
            if case .bearer(let provider) = authorization { return await provider.requests }
            return 0
        }
    }
}

/// `run` once the rows are loaded: process every pending row, export, and summarise.
public enum BatchRun {
    /// Runs `session`'s pending rows against `service`.
    ///
    /// - Throws: ``StorageError`` when the files cannot be written (before sending, exit 2)
    ///   or the queue fails (after sending, exit 4).
    public static func execute(
        session: JobSession, service: ServiceSession, options: RunOptions, control: RunControl,
        logger: Logger = Logger(label: "foundry-batch.run")
    ) async throws -> RunSummary {
        let started = Date()
        let paths = session.paths
        try paths.checkWritable()
        let runner = Runner(
            limits: session.settings.limits, queue: session.queue, http: service.http, target: service.target, options: options,
            control: control, logger: logger
        )
        let counters: RunCounters
        var stop: StopReason?
        var export = ExportReport(output: paths.output, errors: paths.errors)
        let counts: QueueCounts
        do {
            (counters, stop) = try await runner.run()
            do {
                export = try await session.export()
            } catch let error as StorageError {
                // The answers are in the state database; the summary still tells what was
                // sent. A stop that came first (an interrupt, a fatal condition) keeps its code.
                if stop == nil { stop = .storageFailed(error.afterSending()) } else { logger.error("\(error.afterSending().description)") }
            }
            counts = try await session.queue.counts().job
        } catch let error as StorageError {
            throw error.afterSending()
        }
        return RunSummary(
            job: session.job.name, counts: counts, counters: counters, tokenRequests: await service.target.tokenRequests,
            elapsed: Date().timeIntervalSince(started), export: export, stop: stop, prices: session.job.prices
        )
    }
}
