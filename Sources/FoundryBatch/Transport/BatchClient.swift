import AsyncHTTPClient
import FoundryAuth
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// What the provider refused of a control call, as it said it: the HTTP status, its code
/// and message. A refused batch create for the enqueued-token quota is one
/// (``isTokenLimit``); the engine decides what each means.
public struct BatchRefusal: Error, Sendable, Equatable {
    public var status: Int
    public var code: String
    public var message: String

    /// Azure's enqueued-token quota of a Batch deployment is full: create again later.
    public var isTokenLimit: Bool { code == "token_limit_exceeded" }
}

/// A create whose outcome is unknown: it timed out, its connection dropped, or the service
/// answered a 5xx or nonsense. The batch may exist: look for it before creating again.
struct UncertainCreate: Error, Sendable {
    var reason: String
}

/// A file the provider no longer has (404): an output or error file that expired.
struct FileGone: Error, Sendable {
    var fileID: String
}

/// A batch the provider does not know (404): deleted, on a resource made anew, or held by
/// an emulator that ended with its process.
struct BatchGone: Error, Sendable {
    var batchID: String
}

/// The provider's Batch API for one target: files and batches, on either path style.
///
/// Paths follow the target's: without `api_version`, `{base}/openai/v1/files` (or
/// `{base}/files` when the base names its own API root, as OpenAI's does); with it,
/// `{base}/openai/files?api-version=`. A 429, a 5xx, a timeout or a dropped connection is
/// tried again after the service's delay or a back-off; a delay beyond `max_retry_wait`, a
/// rejected credential, a missing role or a missing route stops the run
/// (``FatalCondition``), and so does any other 4xx or a redirect. A create is never sent
/// twice by this client: its refusal is a ``BatchRefusal`` for the engine to judge (the
/// enqueued-token quota), and an answer that leaves its outcome unknown is
/// ``UncertainCreate``. A download answered 404 is ``FileGone``. A stop of the run ends a
/// wait between tries at once.
struct BatchClient: Sendable {
    let http: HTTPClient
    let target: ServiceTarget
    /// The target's name, for messages.
    let name: String
    /// Seconds one control call may take; uploads and downloads get ``transferTimeout``.
    let timeout: TimeInterval
    let maxRetryWait: TimeInterval
    let logger: Logger
    /// The run's control: a stop ends a wait between tries.
    var control: RunControl?
    /// Tries of one control call before the run stops.
    var maxTries = 8

    /// How a call's failures are judged.
    enum Kind: Sendable {
        /// Sent again after a transient failure; any refusal stops the run.
        case control
        /// A batch create: a refusal is the engine's to judge; never sent twice.
        case create
        /// A file download: a 404 is a file gone.
        case download(fileID: String)
        /// A call on one batch (its status, its cancel): a 404 is a batch gone.
        case batch(id: String)
    }

    /// A file of up to 200 MB travels within this.
    static let transferTimeout: TimeInterval = 1800
    /// Control answers are small; a larger one is not a batch object.
    static let maxAnswerBytes = 8 << 20

    /// The URL of `path` (`files`, `batches/{id}`) on the target's path style.
    func url(_ path: String, query: [(String, String)] = []) -> String {
        var pairs = query
        let base: String
        if let version = target.apiVersion {
            base = "\(target.baseURL)/openai/\(path)"
            pairs.insert(("api-version", version), at: 0)
        } else {
            base = target.hasOwnPath ? "\(target.baseURL)/\(path)" : "\(target.baseURL)/openai/v1/\(path)"
        }
        guard !pairs.isEmpty else { return base }
        let encoded = pairs.map { key, value in
            "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: ServiceTarget.queryValueAllowed) ?? value)"
        }
        return base + "?" + encoded.joined(separator: "&")
    }

    /// A path segment of a provider id: an odd id cannot change the route.
    static func segment(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: ServiceTarget.pathSegmentAllowed) ?? id
    }

    /// The `endpoint` of a batch (and the `url` of its lines) for `api`: Azure's spelling
    /// without `/v1`, OpenAI's (a base with its own API root) with it.
    func endpoint(for api: ServiceAPI) -> String {
        target.hasOwnPath && target.apiVersion == nil ? "/v1/\(api.path)" : "/\(api.path)"
    }

    // MARK: Calls

    /// Uploads the file at `path` as `name`, purpose `batch`, streamed from disk. - Returns: the file id.
    func upload(path: String, name: String) async throws -> String {
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
            throw StorageError(path: path, message: "cannot read the batch file to upload")
        }
        let boundary = "foundry-batch-\(UUID().uuidString)"
        let head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(name)\"\r\nContent-Type: application/jsonl\r\n\r\n"
        let tail = "\r\n--\(boundary)--\r\n"
        let answer = try await call(.POST, url("files"), timeout: Self.transferTimeout, what: "upload of \(name)") {
            let parts = MultipartFile(head: ByteBuffer(string: head), path: path, tail: ByteBuffer(string: tail))
            return (.stream(parts, length: .known(Int64(head.utf8.count + size + tail.utf8.count))), "multipart/form-data; boundary=\(boundary)")
        }
        guard let id = answer["id"]?.stringValue, !id.isEmpty else {
            throw FatalCondition("the upload of \(name) to target '\(self.name)' was answered without a file id; check endpoint: and api_version:")
        }
        return id
    }

    /// Creates a batch of the uploaded file `fileID`.
    func create(fileID: String, api: ServiceAPI, window: String) async throws -> BatchObject {
        let body = JSONValue.object([
            ("input_file_id", .string(fileID)), ("endpoint", .string(endpoint(for: api))), ("completion_window", .string(window)),
        ])
        return try await object(.POST, url("batches"), body: body.jsonText, what: "the batch create for file \(fileID)", kind: .create)
    }

    func get(_ id: String) async throws -> BatchObject {
        try await object(.GET, url("batches/\(Self.segment(id))"), what: "the status of batch \(id)", kind: .batch(id: id))
    }

    func cancel(_ id: String) async throws -> BatchObject {
        try await object(.POST, url("batches/\(Self.segment(id))/cancel"), what: "the cancel of batch \(id)", kind: .batch(id: id))
    }

    /// The batch created from `fileID`, looked for among the newest batches (a create whose
    /// answer was lost to a crash must not be made twice).
    func find(inputFileID fileID: String, pages: Int = 10) async throws -> BatchObject? {
        var after: String?
        for _ in 0..<pages {
            var query = [("limit", "100")]
            if let after { query.append(("after", after)) }
            let page = try await call(.GET, url("batches", query: query), what: "the list of batches")
            guard case .array(let items)? = page["data"] else { return nil }
            let batches = items.compactMap(BatchObject.init(json:))
            if let found = batches.first(where: { $0.inputFileID == fileID }) { return found }
            guard page["has_more"] == .bool(true), let last = batches.last?.id else { return nil }
            after = last
        }
        return nil
    }

    /// Downloads the content of `fileID` to `path`, streamed to disk: an output file may be
    /// larger than memory should hold.
    func download(_ fileID: String, to path: String) async throws {
        let url = url("files/\(Self.segment(fileID))/content")
        let idle = timeout
        try await retrying(what: "the download of file \(fileID)", kind: .download(fileID: fileID)) { bearer in
            var request = self.request(.GET, url, bearer: bearer)
            request.headers.replaceOrAdd(name: "Accept", value: "application/jsonl, application/json, */*")
            let http = self.http, prepared = request
            return try await withDeadline(seconds: Self.transferTimeout, on: http.eventLoopGroup.any()) {
                let response = try await http.execute(prepared, timeout: Bounded.timeAmount(seconds: Self.transferTimeout))
                let status = Int(response.status.code)
                guard (200..<300).contains(status) else {
                    let body = try await response.body.collect(upTo: Self.maxAnswerBytes)
                    return .response(status: status, headers: response.headers, body: Array(body.readableBytesView), latencyMs: 0)
                }
                FileManager.default.createFile(atPath: path, contents: nil)
                guard let handle = FileHandle(forWritingAtPath: path) else {
                    throw StorageError(path: path, message: "cannot write the downloaded batch file here")
                }
                defer { try? handle.close() }
                try await Self.stream(response.body, to: handle, idle: idle)
                return .response(status: status, headers: response.headers, body: Array("{}".utf8), latencyMs: 0)
            }
        }
    }

    /// Writes `body` to `handle` as it arrives; a body that stalls for `idle` seconds is a
    /// timeout (a file of 200 MB may take long, but never that long without a byte).
    static func stream(_ body: HTTPClientResponse.Body, to handle: FileHandle, idle: TimeInterval) async throws {
        final class Progress: Sendable {
            let last = Mutex(Date())
        }
        let progress = Progress()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await chunk in body {
                    try handle.write(contentsOf: chunk.readableBytesView)
                    progress.last.withLock { $0 = Date() }
                }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: .milliseconds(250))
                    if Date().timeIntervalSince(progress.last.withLock { $0 }) > idle { throw DeadlineExceeded() }
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    // MARK: Plumbing

    func object(_ method: HTTPMethod, _ url: String, body: String? = nil, what: String, kind: Kind = .control) async throws -> BatchObject {
        let answer = try await call(method, url, what: what, kind: kind) {
            body.map { (.bytes(ByteBuffer(string: $0)), "application/json") } ?? (nil, nil)
        }
        guard let batch = BatchObject(json: answer) else {
            throw FatalCondition("\(what) on target '\(name)' was answered without a batch id or status; check endpoint: and api_version:")
        }
        return batch
    }

    /// One control call with a small JSON answer, tried again as the type's doc says.
    func call(
        _ method: HTTPMethod, _ url: String, timeout: TimeInterval? = nil, what: String, kind: Kind = .control,
        body: @Sendable () -> (HTTPClientRequest.Body?, String?) = { (nil, nil) }
    ) async throws -> JSONValue {
        let limit = timeout ?? self.timeout
        let answer = try await retrying(what: what, kind: kind) { bearer in
            var request = self.request(method, url, bearer: bearer)
            let (payload, type) = body()
            if let payload { request.body = payload }
            if let type { request.headers.replaceOrAdd(name: "Content-Type", value: type) }
            let http = self.http, prepared = request
            let result = try await withDeadline(seconds: limit, on: http.eventLoopGroup.any()) {
                let response = try await http.execute(prepared, timeout: Bounded.timeAmount(seconds: limit))
                let bytes = try await response.body.collect(upTo: Self.maxAnswerBytes)
                return (Int(response.status.code), response.headers, Array(bytes.readableBytesView))
            }
            return .response(status: result.0, headers: result.1, body: result.2, latencyMs: 0)
        }
        // RetryPolicy took only a JSON object for a success.
        return answer.body.flatMap { try? JSONParser.parse($0[...]) } ?? .null
    }

    func request(_ method: HTTPMethod, _ url: String, bearer: String?) -> HTTPClientRequest {
        HTTPTransport.request(method, url, authorization: target.authorization, bearer: bearer, clientRequestID: UUID().uuidString.lowercased())
    }

    /// Sends `exchange` until it is answered with a 2xx, as the type's doc says. - Returns: that answer.
    @discardableResult
    func retrying(what: String, kind: Kind = .control, _ exchange: @Sendable (String?) async throws -> ServiceAnswer) async throws -> ServiceAnswer {
        if target.authorization.carriesSecret, let url = URL(string: target.baseURL), !TransportSecurity.maySendSecret(to: url) {
            throw FatalCondition("refusing to send a credential to \(TransportSecurity.origin(ofLocation: target.baseURL)) over plain http: use https")
        }
        var refreshed = false
        var tries = 0
        while true {
            try Task.checkCancellation()
            tries += 1
            var bearer: AccessToken?
            if case .bearer(let provider) = target.authorization {
                do { bearer = try await provider.token() } catch {
                    if Task.isCancelled { throw CancellationError() }
                    throw FatalCondition("cannot get an Entra ID token for target '\(name)': \(error)")
                }
            }
            let answer: ServiceAnswer
            do {
                answer = try await exchange(bearer?.token)
            } catch is DeadlineExceeded {
                answer = .timedOut(latencyMs: 0)
            } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
                answer = .timedOut(latencyMs: 0)
            } catch let error as StorageError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                answer = .connectionFailed(reason: HTTPTransport.describe(error), latencyMs: 0)
            }
            let verdict = RetryPolicy.classify(answer, deployment: "", url: "\(what)", now: Date())
            switch verdict {
            case .success:
                return answer
            case .retry(let delay, let error, let throttled):
                // A throttled create was not made; any other failure may have made it.
                if case .create = kind, !throttled, error.statusCode != 408 {
                    throw UncertainCreate(reason: "\(error.code): \(error.message)")
                }
                if let delay, delay > maxRetryWait {
                    throw FatalCondition(
                        "\(what) on target '\(name)': the service asks to wait \(Bounded.int(delay)) s (\(error.message)), more than limits.max_retry_wait (\(Bounded.int(maxRetryWait)) s). Run the job again later."
                    )
                }
                guard tries < maxTries else {
                    throw FatalCondition("\(what) on target '\(name)' failed \(tries) times: \(error.message). Run the job again later.")
                }
                let wait = delay.flatMap { $0 > 0 ? $0 : nil } ?? RetryPolicy.backoff(attempt: tries)
                logger.info("batch control call retried", metadata: ["call": "\(what)", "error": "\(error.code)", "wait": "\(Bounded.int(wait))"])
                try await pause(wait)
            case .unauthorized(let error):
                if case .bearer(let provider) = target.authorization, let bearer, !refreshed {
                    refreshed = true
                    await provider.invalidate(bearer)
                    continue
                }
                throw FatalCondition("target '\(name)' rejected the credentials for \(what) (HTTP 401): \(error.message)\nCheck auth: of the target (or its api_key_env).")
            case .permanent(let error):
                if case .create = kind { throw BatchRefusal(status: error.statusCode ?? 0, code: error.code, message: error.message) }
                throw FatalCondition(
                    "target '\(name)' refused \(what) (\(error.statusCode.map { "HTTP \($0)" } ?? error.code) \(error.code)): \(error.message)\nCheck endpoint: and api_version: of the target."
                )
            case .fatal(let condition):
                // A 404 here is a missing route or object, not a missing deployment.
                if case .response(404, _, let body, _) = answer {
                    if case .download(let fileID) = kind { throw FileGone(fileID: fileID) }
                    if case .batch(let id) = kind { throw BatchGone(batchID: id) }
                    let said = ServiceBody.decode(body)?.error?.message.map { ": " + ServiceText.printable($0, limit: 300) } ?? ""
                    throw FatalCondition(
                        "target '\(name)' answered 404 for \(what) at \(target.baseURL)\(said).\nCheck endpoint: and api_version: (Azure: a resource with a Global or Data-zone Batch deployment)."
                    )
                }
                throw condition
            }
        }
    }
}

extension BatchClient {
    /// Sleeps `seconds` between tries, ending at once (cancelled) when the run is stopped.
    func pause(_ seconds: TimeInterval) async throws {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if let control, await control.reason != nil { throw CancellationError() }
            try await Task.sleep(for: Bounded.duration(seconds: min(end.timeIntervalSinceNow, 0.1)))
        }
    }
}

/// A multipart body streamed from disk: the head, the file in chunks, the tail.
struct MultipartFile: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let head: ByteBuffer
    let path: String
    let tail: ByteBuffer

    static let chunk = 1 << 20

    struct AsyncIterator: AsyncIteratorProtocol {
        let parts: MultipartFile
        var stage = 0
        var handle: FileHandle?

        mutating func next() async throws -> ByteBuffer? {
            switch stage {
            case 0:
                stage = 1
                return parts.head
            case 1:
                if handle == nil {
                    guard let opened = FileHandle(forReadingAtPath: parts.path) else {
                        throw StorageError(path: parts.path, message: "cannot read the batch file to upload")
                    }
                    handle = opened
                }
                if let data = try handle?.read(upToCount: MultipartFile.chunk), !data.isEmpty { return ByteBuffer(bytes: data) }
                try? handle?.close()
                handle = nil
                stage = 2
                return parts.tail
            default:
                return nil
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(parts: self) }
}
