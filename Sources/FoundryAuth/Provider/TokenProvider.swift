import Foundation
import Logging
import Synchronization

/// One token cache shared by every worker of a run.
///
/// - Callers get the cached token at once while it is valid; they wait only when there is
///   no valid token. A token in the last quarter of its lifetime (at most 30 s) no longer
///   counts as valid, so a request never leaves with a token about to expire.
/// - Inside the refresh window (min(300 s, half the lifetime) before expiry) one
///   background refresh starts; callers keep the still-valid token meanwhile.
/// - Single flight: any number of concurrent callers cause one token request.
/// - A refresh that fails while the old token is still valid is tried again 30 s later and
///   fails nobody.
/// - ``invalidate(_:)`` after a service 401 drops that token once, however many workers
///   report it, so the next call fetches one new token.
///
/// ```swift
/// let provider = TokenProvider(credential: ClientSecretCredential(...))
/// let token = try await provider.token()
/// ```
public actor TokenProvider {
    public nonisolated let credential: any TokenCredential
    public let scope: String
    let now: @Sendable () -> Date
    let logger: Logger
    /// Seconds to wait after a failed background refresh.
    let retryDelay: TimeInterval

    var cached: AccessToken?
    var obtainedAt: Date?
    var inFlight: Task<AccessToken, any Error>?
    var notBefore: Date?
    /// Token requests made (successful or not), for the run summary.
    public private(set) var requests = 0

    public init(
        credential: any TokenCredential,
        scope: String = cognitiveServicesScope,
        retryDelay: TimeInterval = 30,
        logger: Logger = Logger(label: "foundry-batch.auth"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.credential = credential
        self.scope = scope
        self.retryDelay = retryDelay
        self.logger = logger
        self.now = now
    }

    /// The current token, fetching or refreshing as needed.
    ///
    /// - Throws: ``AuthError`` only when there is no valid token and fetching one failed.
    public func token() async throws(AuthError) -> AccessToken {
        let current = now()
        if let cached, current < usableUntil(cached) {
            if current >= refreshTime(for: cached), inFlight == nil, current >= (notBefore ?? .distantPast) {
                startFetch(background: true)
            }
            return cached
        }
        let task = inFlight ?? startFetch(background: false)
        do {
            return try await Self.value(of: task)
        } catch let error as AuthError {
            throw error
        } catch is CancellationError {
            throw AuthError(.network, credential: credential.name, "the token request was abandoned: the run is stopping")
        } catch {
            throw AuthError(.network, credential: credential.name, "token request failed: \(error)")
        }
    }

    /// Waits for the shared fetch, but lets this caller go at once when its task is
    /// cancelled: awaiting `task.value` is not cancellable, and a stalled token endpoint
    /// would otherwise hold a stopping run for the whole request timeout.
    nonisolated static func value(of task: Task<AccessToken, any Error>) async throws -> AccessToken {
        let waiter = Waiter()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AccessToken, any Error>) in
                waiter.install(continuation)
                Task { waiter.resume(with: await task.result) }
            }
        } onCancel: {
            waiter.resume(with: .failure(CancellationError()))
        }
    }

    /// One waiter's continuation, resumed exactly once: by the fetch or by cancellation,
    /// whichever comes first (cancellation may even come before the continuation exists).
    final class Waiter: Sendable {
        enum State {
            case waiting
            case installed(CheckedContinuation<AccessToken, any Error>)
            case done(Result<AccessToken, any Error>?)
        }

        let state = Mutex(State.waiting)

        func install(_ continuation: CheckedContinuation<AccessToken, any Error>) {
            let early: Result<AccessToken, any Error>? = state.withLock { state in
                if case .done(let result) = state { return result ?? .failure(CancellationError()) }
                state = .installed(continuation)
                return nil
            }
            if let early { continuation.resume(with: early) }
        }

        func resume(with result: Result<AccessToken, any Error>) {
            let continuation: CheckedContinuation<AccessToken, any Error>? = state.withLock { state in
                switch state {
                case .waiting:
                    state = .done(result)
                    return nil
                case .installed(let continuation):
                    state = .done(nil)
                    return continuation
                case .done:
                    return nil
                }
            }
            continuation?.resume(with: result)
        }
    }

    /// Drops `token` after the service refused it (HTTP 401), so the next call fetches anew.
    ///
    /// Reports of a token that was already replaced are ignored: 64 workers reporting the
    /// same 401 cause one refresh.
    public func invalidate(_ token: AccessToken) {
        guard cached?.token == token.token else { return }
        logger.info("token refused by the service; fetching a new one")
        cached = nil
        notBefore = nil
    }

    /// The last moment a token is handed out: a request must still reach the service before
    /// it expires, so the final quarter of its lifetime (at most 30 s) does not count.
    func usableUntil(_ token: AccessToken) -> Date {
        let lifetime = token.expiresOn.timeIntervalSince(obtainedAt ?? token.expiresOn)
        return token.expiresOn.addingTimeInterval(-min(30, max(lifetime, 0) / 4))
    }

    /// The moment to start refreshing: the issuer's `refresh_in`, else the window before expiry.
    func refreshTime(for token: AccessToken) -> Date {
        if let refreshOn = token.refreshOn { return refreshOn }
        let lifetime = token.expiresOn.timeIntervalSince(obtainedAt ?? token.expiresOn)
        let window = min(300, max(lifetime, 0) / 2)
        return token.expiresOn.addingTimeInterval(-window)
    }

    @discardableResult
    func startFetch(background: Bool) -> Task<AccessToken, any Error> {
        let credential = self.credential
        let scope = self.scope
        requests += 1
        let task = Task<AccessToken, any Error> {
            let token = try await credential.getToken(scope: scope)
            return token
        }
        inFlight = task
        Task { await self.settle(task, background: background) }
        return task
    }

    func settle(_ task: Task<AccessToken, any Error>, background: Bool) async {
        let result = await task.result
        guard inFlight == task else { return }
        inFlight = nil
        switch result {
        case .success(let token):
            cached = token
            obtainedAt = now()
            notBefore = nil
            logger.debug("token refreshed", metadata: ["expires": "\(token.expiresOn)", "credential": "\(credential.name)"])
        case .failure(let error):
            if background, let cached, cached.expiresOn > now() {
                notBefore = now().addingTimeInterval(retryDelay)
                logger.warning(
                    "token refresh failed; keeping the current token and trying again in \(Int(retryDelay)) s",
                    metadata: ["error": "\(error)"]
                )
            }
        }
    }
}
