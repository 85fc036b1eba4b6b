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

    let clients: [HTTPClient]
    let target: ServiceTarget
    let timeout: TimeInterval

    /// A transport over `clients` (at least one): a row goes on the client its sequence
    /// number picks, which spreads the rows in flight evenly over them.
    public init(clients: [HTTPClient], target: ServiceTarget, timeout: TimeInterval) {
        precondition(!clients.isEmpty, "a transport needs a client")
        self.clients = clients
        self.target = target
        self.timeout = timeout
    }

    public init(http: HTTPClient, target: ServiceTarget, timeout: TimeInterval) {
        self.init(clients: [http], target: target, timeout: timeout)
    }

    /// Sends `row`, with `bearer` when the target uses Entra tokens, and waits for the answer.
    ///
    /// - Returns: the answer and the `x-ms-client-request-id` it carried.
    public func send(_ row: ClaimedRow, bearer: String?) async -> (answer: ServiceAnswer, clientRequestID: String) {
        let exchange = launch(row, bearer: bearer)
        return (await exchange.answer(), exchange.clientRequestID)
    }

    /// Puts `row` on the wire, with `bearer` when the target uses Entra tokens; its answer
    /// is awaited with ``Exchange/answer()``.
    ///
    /// One deadline (`limits.timeout`) covers the whole exchange, body included. Redirects
    /// are never followed (the client is built with them off): a 3xx comes back as an
    /// answer, for ``RetryPolicy`` to refuse.
    public func launch(_ row: ClaimedRow, bearer: String?) -> Exchange {
        let clientRequestID = UUID().uuidString.lowercased()
        let url = target.url(api: row.api, deployment: row.deployment)
        if target.authorization.carriesSecret, !(URL(string: url).map(TransportSecurity.maySendSecret) ?? false) {
            return Exchange(clientRequestID: clientRequestID, state: .answered(.refused(reason: "refusing to send a credential to \(TransportSecurity.origin(ofLocation: url)) over plain http: use https (plain http is allowed only to this machine)")))
        }
        if let bearer, !TransportSecurity.isHeaderSafe(bearer) {
            return Exchange(clientRequestID: clientRequestID, state: .answered(.refused(reason: "the Entra ID token holds characters that cannot go in an HTTP header; the identity endpoint answered nonsense")))
        }
        let client = clients[Int(row.seq.magnitude % UInt64(clients.count))]
        return launch(.POST, url, body: row.body, bearer: bearer, clientRequestID: clientRequestID, on: client, upTo: Self.maxResponseBytes)
    }

    /// Puts one request on the wire with the target's credential.
    func launch(
        _ method: HTTPMethod, _ url: String, body: String?, bearer: String?, clientRequestID: String, on client: HTTPClient, upTo limit: Int
    ) -> Exchange {
        var headers = Self.headers(authorization: target.authorization, bearer: bearer, clientRequestID: clientRequestID)
        if body != nil { headers.add(name: "Content-Type", value: "application/json") }
        let started = ContinuousClock.now
        do {
            // The future-based call on purpose: a request waits as a callback on the event
            // loop, not as a chain of suspended async frames and child tasks, which cost
            // about 30 KB for each of thousands of requests in flight. Its deadline covers the
            // whole exchange, body included.
            let request = try HTTPClient.Request(url: url, method: method, headers: headers, body: body.map { .byteBuffer(ByteBuffer(string: $0)) })
            let task = client.execute(
                request: request, delegate: ResponseAccumulator(request: request, maxBodySize: limit),
                deadline: .now() + Bounded.timeAmount(seconds: timeout)
            )
            return Exchange(clientRequestID: clientRequestID, state: .flying(task, started: started, limit: limit))
        } catch {
            return Exchange(clientRequestID: clientRequestID, state: .answered(.connectionFailed(reason: Self.describe(error), latencyMs: 0)))
        }
    }

    /// One request on the wire, or the answer it got without going there.
    public struct Exchange: Sendable {
        enum State: Sendable {
            case answered(ServiceAnswer)
            case flying(HTTPClient.Task<HTTPClient.Response>, started: ContinuousClock.Instant, limit: Int)
        }

        /// The `x-ms-client-request-id` the request carries.
        public let clientRequestID: String
        let state: State

        /// Waits for the whole answer; an error becomes the answer that says what happened.
        /// Cancelling the waiting task cancels the request.
        public func answer() async -> ServiceAnswer {
            switch state {
            case .answered(let answer):
                return answer
            case .flying(let task, let started, let limit):
                let result = await Self.wait(for: task)
                let duration = ContinuousClock.now - started
                let elapsed = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
                return Self.answer(result, limit: limit, latencyMs: elapsed)
            }
        }

        /// The wait itself, in as small an async frame as can be: thousands of requests in
        /// flight each hold one (`HTTPClient.Response` and the error casts would make it
        /// kilobytes).
        @inline(never)
        static func wait(for task: HTTPClient.Task<HTTPClient.Response>) async -> Result<HTTPClient.Response, any Error> {
            await withTaskCancellationHandler {
                await withUnsafeContinuation { continuation in
                    task.futureResult.whenComplete { continuation.resume(returning: $0) }
                }
            } onCancel: {
                task.cancel()
            }
        }

        static func answer(_ result: Result<HTTPClient.Response, any Error>, limit: Int, latencyMs: Double) -> ServiceAnswer {
            switch result {
            case .success(let response):
                let bytes = response.body.map { Array($0.readableBytesView) } ?? []
                return .response(status: Int(response.status.code), headers: response.headers, body: bytes, latencyMs: latencyMs)
            case .failure(let error as HTTPClientError) where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout:
                return .timedOut(latencyMs: latencyMs)
            case .failure(is ResponseAccumulator.ResponseTooBigError):
                return .tooLarge(limit: limit, latencyMs: latencyMs)
            case .failure(let error):
                return .connectionFailed(reason: HTTPTransport.describe(error), latencyMs: latencyMs)
            }
        }
    }

    /// A request to `url` with the headers every call to the service carries: what it
    /// accepts, who sends it, its `x-ms-client-request-id`, and the credential.
    static func request(
        _ method: HTTPMethod, _ url: String, authorization: RequestAuthorization, bearer: String?, clientRequestID: String
    ) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers = headers(authorization: authorization, bearer: bearer, clientRequestID: clientRequestID)
        return request
    }

    /// The headers of ``request(_:_:authorization:bearer:clientRequestID:)``.
    static func headers(authorization: RequestAuthorization, bearer: String?, clientRequestID: String) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "User-Agent", value: userAgent)
        headers.add(name: "x-ms-client-request-id", value: clientRequestID)
        switch authorization {
        case .apiKey(let key): headers.add(name: "api-key", value: key)
        case .bearer: if let bearer { headers.add(name: "Authorization", value: "Bearer \(bearer)") }
        case .none: break
        }
        return headers
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

    /// Workers per row client: a client's connection pool does work linear in its
    /// connections for each one it opens or hands out, so thousands in flight on one client
    /// spend more CPU in the pool than on the wire.
    public static let rowsPerClient = 256

    /// `first` and as many more clients like it as `concurrency` workers need, one per
    /// ``rowsPerClient``; each shuts down with the session.
    public static func forRows(concurrency: Int, first: HTTPClient) -> [HTTPClient] {
        let count = (max(concurrency, 1) + rowsPerClient - 1) / rowsPerClient
        return [first] + (1..<count).map { _ in forRun(concurrency: concurrency) }
    }
}
