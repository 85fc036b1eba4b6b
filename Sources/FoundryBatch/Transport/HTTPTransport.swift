import AsyncHTTPClient
import FoundryAuth
import Foundation
import NIOCore
import NIOHTTP1

/// Sends one row's request and reads the whole answer, within the job's timeout.
public struct HTTPTransport: Sendable {
    /// Answers larger than this are cut off and treated as a connection failure.
    public static let maxResponseBytes = 64 << 20
    static let userAgent = "foundry-batch/1.0"

    let http: HTTPClient
    let target: ServiceTarget
    let timeout: TimeInterval

    public init(http: HTTPClient, target: ServiceTarget, timeout: TimeInterval) {
        self.http = http
        self.target = target
        self.timeout = timeout
    }

    /// Sends `row`, with `bearer` when the target uses Entra tokens.
    ///
    /// One deadline (`limits.timeout`) covers the whole exchange, body included. Redirects
    /// are never followed (the client is built with them off): a 3xx comes back as an
    /// answer, for ``RetryPolicy`` to refuse.
    ///
    /// - Returns: the answer and the `x-ms-client-request-id` it carried.
    public func send(_ row: ClaimedRow, bearer: String?) async -> (answer: ServiceAnswer, clientRequestID: String) {
        let clientRequestID = UUID().uuidString.lowercased()
        let url = target.url(api: row.api, deployment: row.deployment)
        if target.authorization.carriesSecret, !(URL(string: url).map(TransportSecurity.maySendSecret) ?? false) {
            return (.refused(reason: "refusing to send a credential to \(TransportSecurity.origin(ofLocation: url)) over plain http: use https (plain http is allowed only to this machine)"), clientRequestID)
        }
        if let bearer, !TransportSecurity.isHeaderSafe(bearer) {
            return (.refused(reason: "the Entra ID token holds characters that cannot go in an HTTP header; the identity endpoint answered nonsense"), clientRequestID)
        }
        var request = Self.request(.POST, url, authorization: target.authorization, bearer: bearer, clientRequestID: clientRequestID)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: row.body))
        let started = ContinuousClock.now
        func elapsed() -> Double {
            let duration = ContinuousClock.now - started
            return Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        }
        let http = self.http, timeout = self.timeout, prepared = request
        do {
            let (status, headers, body) = try await withDeadline(seconds: timeout, on: http.eventLoopGroup.any()) {
                let response = try await http.execute(prepared, timeout: Bounded.timeAmount(seconds: timeout))
                let body = try await response.body.collect(upTo: Self.maxResponseBytes)
                return (Int(response.status.code), response.headers, Array(body.readableBytesView))
            }
            return (.response(status: status, headers: headers, body: body, latencyMs: elapsed()), clientRequestID)
        } catch is DeadlineExceeded {
            return (.timedOut(latencyMs: elapsed()), clientRequestID)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return (.timedOut(latencyMs: elapsed()), clientRequestID)
        } catch is NIOTooManyBytesError {
            return (.tooLarge(limit: Self.maxResponseBytes, latencyMs: elapsed()), clientRequestID)
        } catch {
            return (.connectionFailed(reason: Self.describe(error), latencyMs: elapsed()), clientRequestID)
        }
    }

    /// A request to `url` with the headers every call to the service carries: what it
    /// accepts, who sends it, its `x-ms-client-request-id`, and the credential.
    static func request(
        _ method: HTTPMethod, _ url: String, authorization: RequestAuthorization, bearer: String?, clientRequestID: String
    ) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: userAgent)
        request.headers.add(name: "x-ms-client-request-id", value: clientRequestID)
        switch authorization {
        case .apiKey(let key): request.headers.add(name: "api-key", value: key)
        case .bearer: if let bearer { request.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
        case .none: break
        }
        return request
    }

    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError {
            switch client {
            case .remoteConnectionClosed: return "the connection was closed before the answer was complete"
            case .cancelled: return "the request was cancelled"
            default: return "HTTP client error: \(ServiceText.caseName(of: client))"
            }
        }
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        return "connection error: \(text.prefix(200))"
    }
}

extension HTTPClient {
    /// The run's client: HTTP/2 when the server offers it, pooled connections for `concurrency` workers.
    public static func forRun(concurrency: Int) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.httpVersion = .automatic
        configuration.timeout = .init(connect: .seconds(15))
        // Every request carries a credential (an api-key, a bearer token, a client secret in
        // a token request's body); a redirect would hand it to whatever server it names.
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(concurrency, 8))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
