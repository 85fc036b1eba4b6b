import AsyncHTTPClient
import FoundryAuth
import Foundation
import Logging

extension ServiceTarget {
    /// The target of `spec` whose endpoint is a URL, its credential from the environment.
    ///
    /// - Parameter credentials: token providers already made for this run, shared by
    ///   targets of the same credential kind (one provider, one token, per credential).
    /// - Throws: ``UsageError`` for a plain-http endpoint on another machine with a
    ///   credential; ``JobFileError`` for a target's `api_key_env` that is not set;
    ///   ``FatalCondition`` when the credential is not set up.
    static func resolve(
        spec: JobFile.Target, job: JobFile, baseURL: String, environment: CredentialEnvironment, http: HTTPClient,
        credentials: CredentialCache
    ) throws -> ServiceTarget {
        let auth = spec.auth
        if auth != .none, let url = URL(string: baseURL), !TransportSecurity.maySendSecret(to: url) {
            throw UsageError(
                "\(job.path): endpoint: \(baseURL) is plain http to another machine; a key or token is never sent that way. Use https (or http to localhost)."
            )
        }
        let authorization: RequestAuthorization
        switch auth {
        case .none:
            authorization = .none
        case .apiKey:
            let variable = spec.apiKeyEnv
            guard let key = environment[variable] else {
                if job.isPooled {
                    throw JobFileError(
                        file: job.path, line: spec.line, key: "targets[\(spec.name)].api_key_env",
                        message: "\(variable) is not set; export the key of target '\(spec.name)' (Keys and Endpoint of its resource) in it"
                    )
                }
                throw FatalCondition("auth: api-key needs the key in \(variable) (Keys and Endpoint of the resource)")
            }
            guard TransportSecurity.isHeaderSafe(key) else {
                throw FatalCondition(
                    "\(variable) holds a character that cannot go in an HTTP header (a space, a line break, a non-ASCII character); copy the key again from Keys and Endpoint of the resource"
                )
            }
            authorization = .apiKey(key)
        default:
            authorization = .bearer(try credentials.provider(kind: auth, environment: environment, http: http))
        }
        return ServiceTarget(baseURL: baseURL, apiVersion: spec.apiVersion, authorization: authorization)
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
            limits: session.settings.limits, queue: session.queue, service: service, options: options, control: control, logger: logger
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
            job: session.job.name, counts: counts, counters: counters, tokenRequests: await runner.pool.tokenRequests,
            elapsed: Date().timeIntervalSince(started), export: export, stop: stop, prices: session.job.prices
        )
    }
}
