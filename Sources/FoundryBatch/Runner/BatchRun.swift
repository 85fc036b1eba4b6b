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

/// `run`: load the inputs, process every pending row, export, and summarise.
public enum BatchRun {
    public static func execute(
        context: JobContext, session: JobSession, options: RunOptions, control: RunControl,
        logger: Logger = Logger(label: "foundry-batch.run")
    ) async throws -> RunSummary {
        try await execute(context: context, target: session.target, http: session.http, options: options, control: control, logger: logger)
    }

    /// ``execute(context:session:options:control:logger:)`` with a target and client of the caller's.
    public static func execute(
        context: JobContext, target: ServiceTarget, http: HTTPClient, options: RunOptions, control: RunControl,
        logger: Logger = Logger(label: "foundry-batch.run")
    ) async throws -> RunSummary {
        let started = Date()
        try context.paths.checkWritable()
        let runner = Runner(job: context.job, queue: context.queue, http: http, target: target, options: options, control: control, logger: logger)
        let counters: RunCounters
        var stop: StopReason?
        var export = ExportReport(output: context.paths.output, errors: context.paths.errors)
        let counts: QueueCounts
        do {
            (counters, stop) = try await runner.run()
            do {
                export = try context.export()
            } catch let error as StorageError {
                // The answers are in the state database; the summary still tells what was
                // sent. A stop that came first (an interrupt, a fatal condition) keeps its code.
                if stop == nil { stop = .storageFailed(error.afterSending()) } else { logger.error("\(error.afterSending().description)") }
            }
            counts = try await context.queue.counts().job
        } catch let error as StorageError {
            throw error.afterSending()
        }
        return RunSummary(
            job: context.job.name, counts: counts, counters: counters, tokenRequests: await target.tokenRequests,
            elapsed: Date().timeIntervalSince(started), export: export, stop: stop, prices: context.job.prices
        )
    }
}
