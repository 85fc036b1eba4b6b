import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The emulated Batch API: files and batches on the v1 paths (`/openai/v1/files`,
/// `/openai/v1/batches`) and on the api-version paths (`/openai/files?api-version=`),
/// authorised as inference is.
///
/// Its calls are counted in `batch_calls`, never in `requests` or `by_route`, so a test can
/// show that a batch job sent nothing online. See ``BatchStore`` for how a batch progresses.
struct BatchRoutes {
    let state: EmulatorState

    /// The two path styles of the data plane.
    enum Style: Sendable {
        /// `/openai/v1/...`: no api-version; creates answer 200, as OpenAI's do.
        case v1
        /// `/openai/...?api-version=`: a missing api-version is 404, as on the deployment paths;
        /// creates answer 201, as the 2024-10-21 reference documents.
        case versioned

        var base: String { self == .v1 ? "/openai/v1" : "/openai" }
        var createdStatus: Int { self == .v1 ? 200 : 201 }
    }

    /// The largest upload body collected: the form around a file of up to 200 MB.
    static let maxUploadBytes = 256 << 20
    /// Azure's ceiling on a batch input file.
    static let maxFileBytes = 200_000_000
    static let purposes: Set<String> = ["batch", "fine-tune", "assistants", "vision", "user_data", "evals"]
    /// The api-version whose batches spell status in PascalCase and times as ISO 8601 strings.
    static let legacyAPIVersion = "2024-07-01-preview"

    var store: BatchStore { state.batches }

    func register(on router: Router<BasicRequestContext>) {
        for style in [Style.v1, .versioned] {
            let base = style.base
            router.post("\(base)/files") { request, _ in
                try await serve("files.upload", request, style) { try await upload(request, style) }
            }
            router.get("\(base)/files/:id") { request, context in
                try await serve("files.get", request, style) { getFile(Self.id(context)) }
            }
            router.get("\(base)/files/:id/content") { request, context in
                try await serve("files.content", request, style) { content(Self.id(context)) }
            }
            router.delete("\(base)/files/:id") { request, context in
                try await serve("files.delete", request, style) { deleteFile(Self.id(context)) }
            }
            router.post("\(base)/batches") { request, _ in
                try await serve("batches.create", request, style) { try await create(request, style) }
            }
            router.get("\(base)/batches") { request, _ in
                try await serve("batches.list", request, style) { list(request) }
            }
            router.get("\(base)/batches/:id") { request, context in
                try await serve("batches.get", request, style) { get(request, Self.id(context)) }
            }
            router.post("\(base)/batches/:id/cancel") { request, context in
                try await serve("batches.cancel", request, style) { cancel(request, Self.id(context)) }
            }
        }
    }

    static func id(_ context: BasicRequestContext) -> String {
        context.parameters.get("id") ?? ""
    }

    /// Authorises the call, checks the api-version, runs `handler` and counts the call.
    func serve(_ call: String, _ request: Request, _ style: Style, _ handler: () async throws -> Response) async throws -> Response {
        var response: Response
        if let denied = FoundryRoutes(state: state).authorize(request, operation: .chat, path: request.uri.path) {
            response = denied
        } else if style == .versioned, request.query("api-version") == nil {
            response = JSONResponse.make(404, AzureError.resourceNotFound)
        } else {
            response = try await handler()
        }
        let requestID = UUID().uuidString.lowercased()
        response.headers[.apimRequestID] = requestID
        response.headers[.requestID] = requestID
        state.recordBatchCall(call, status: response.status.code)
        return response
    }

    func legacy(_ request: Request) -> Bool {
        request.query("api-version") == Self.legacyAPIVersion
    }

    static func notFound(_ kind: String, _ id: String) -> Response {
        JSONResponse.make(404, AzureError.body(code: "NotFound", message: "The \(kind) '\(id)' was not found."))
    }

    // MARK: Files

    /// `POST .../files`: multipart/form-data with `purpose` and `file`.
    func upload(_ request: Request, _ style: Style) async throws -> Response {
        guard let contentType = request.headers[.contentType], Multipart.boundary(contentType: contentType) != nil else {
            return JSONResponse.make(400, AzureError.badRequest("The request must be multipart/form-data with a 'file' and a 'purpose' field."))
        }
        let buffer = try await request.body.collect(upTo: Self.maxUploadBytes)
        let body = Data(buffer.readableBytesView)
        let form: Multipart
        do {
            form = try Multipart(body: body, contentType: contentType)
        } catch {
            return JSONResponse.make(400, AzureError.badRequest("The multipart form could not be read: \(error)."))
        }
        guard let file = form.part(named: "file") else {
            return JSONResponse.make(400, AzureError.badRequest("Missing required parameter: 'file'.", param: "file"))
        }
        let purpose = form.part(named: "purpose")?.text.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        guard Self.purposes.contains(purpose) else {
            return JSONResponse.make(400, AzureError.badRequest("Invalid value for 'purpose': '\(purpose)'. Use 'batch' for batch input files.", param: "purpose"))
        }
        if purpose == "batch", file.data.count > Self.maxFileBytes {
            return JSONResponse.make(400, AzureError.badRequest("The file is \(file.data.count) bytes; a batch input file can be up to 200 MB.", param: "file"))
        }
        let stored = store.upload(filename: file.filename ?? "file.jsonl", purpose: purpose, data: file.data, now: Date())
        state.recordBatch { $0.filesUploaded += 1 }
        return JSONResponse.make(style.createdStatus, stored.object)
    }

    func getFile(_ id: String) -> Response {
        guard let file = store.file(id) else { return Self.notFound("file", id) }
        return JSONResponse.make(200, file.object)
    }

    /// `GET .../files/{id}/content`: the bytes exactly as stored (JSONL for batch files).
    func content(_ id: String) -> Response {
        guard let file = store.file(id) else { return Self.notFound("file", id) }
        return Response(
            status: .ok, headers: [.contentType: "application/octet-stream"],
            body: .init(byteBuffer: ByteBuffer(bytes: file.data))
        )
    }

    func deleteFile(_ id: String) -> Response {
        guard store.deleteFile(id) else { return Self.notFound("file", id) }
        return JSONResponse.make(200, ["id": id, "object": "file", "deleted": true] as [String: Any])
    }

    // MARK: Batches

    /// `POST .../batches`: `{"input_file_id", "endpoint", "completion_window": "24h"}`.
    ///
    /// The input file is validated now; the batch still shows `validating` for the first tenth
    /// of `batch_seconds` before it fails or starts, as the service's validation takes a while.
    func create(_ request: Request, _ style: Style) async throws -> Response {
        let data = try await request.collectBody()
        guard let body = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            return JSONResponse.make(400, AzureError.badRequest("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"))
        }
        guard let inputFileID = body["input_file_id"] as? String, !inputFileID.isEmpty else {
            return JSONResponse.make(400, AzureError.badRequest("Missing required parameter: 'input_file_id'.", param: "input_file_id"))
        }
        guard let endpoint = body["endpoint"] as? String, let operation = BatchStore.operationFor(path: endpoint) else {
            return JSONResponse.make(
                400,
                AzureError.badRequest("Invalid value for 'endpoint': use '/v1/chat/completions', '/v1/responses' or '/v1/embeddings' (or the same without '/v1').", param: "endpoint")
            )
        }
        guard let window = body["completion_window"] as? String, window == "24h" else {
            return JSONResponse.make(400, AzureError.badRequest("Invalid value for 'completion_window': only '24h' is supported.", param: "completion_window"))
        }
        guard let file = store.file(inputFileID) else {
            return JSONResponse.make(400, AzureError.badRequest("Invalid 'input_file_id': no file '\(inputFileID)' was found.", param: "input_file_id"))
        }
        guard file.purpose == "batch" else {
            return JSONResponse.make(400, AzureError.badRequest("The input file '\(inputFileID)' was uploaded with purpose '\(file.purpose)'; a batch needs purpose 'batch'.", param: "input_file_id"))
        }
        let routes = FoundryRoutes(state: state)
        let validation = BatchStore.validate(file.data, operation: operation, endpoint: endpoint) { routes.deploymentExists($0) }
        let now = Date()
        let (creation, work) = store.create(
            inputFileID: inputFileID, endpoint: endpoint, completionWindow: window, operation: operation, validation: validation,
            metadata: body["metadata"] as? [String: String], configuration: state.configuration, now: now
        )
        state.recordBatchLines(work)
        switch creation {
        case .refused(let message):
            state.recordBatch { $0.batchCreatesRefused += 1 }
            // Fail fast: the quota is checked on arrival and the create refused (400), so the
            // caller can back off and submit the same file again.
            let error: [String: Any] = ["code": "token_limit_exceeded", "message": message, "type": "invalid_request_error", "param": NSNull()]
            return JSONResponse.make(400, ["error": error])
        case .created(let batch):
            state.recordBatch { $0.batchesCreated += 1 }
            return JSONResponse.make(style.createdStatus, batch.object(at: now, legacy: legacy(request)))
        }
    }

    func get(_ request: Request, _ id: String) -> Response {
        let now = Date()
        guard let read = store.read(id, now: now, configuration: state.configuration) else { return Self.notFound("batch", id) }
        state.recordBatchLines(read.1)
        return JSONResponse.make(200, read.0.object(at: now, legacy: legacy(request)))
    }

    /// `GET .../batches?limit=&after=`: newest first.
    func list(_ request: Request) -> Response {
        let now = Date()
        let limit = min(max(request.query("limit").flatMap { Int($0) } ?? 20, 1), 100)
        let page = store.list(limit: limit, after: request.query("after"), now: now, configuration: state.configuration)
        state.recordBatchLines(page.work)
        let spelling = legacy(request)
        let data = page.batches.map { $0.object(at: now, legacy: spelling) }
        return JSONResponse.make(
            200,
            [
                "object": "list", "data": data, "has_more": page.hasMore,
                "first_id": page.batches.first.map { $0.id as Any } ?? NSNull(),
                "last_id": page.batches.last.map { $0.id as Any } ?? NSNull(),
            ] as [String: Any]
        )
    }

    /// `POST .../batches/{id}/cancel`: `cancelling` now, `cancelled` at the next read. Cancelling
    /// a cancelled batch answers it again; any other ended batch is 409.
    func cancel(_ request: Request, _ id: String) -> Response {
        let now = Date()
        let (cancellation, work) = store.cancel(id, now: now, configuration: state.configuration)
        state.recordBatchLines(work)
        switch cancellation {
        case .notFound:
            return Self.notFound("batch", id)
        case .cancelling(let batch):
            return JSONResponse.make(200, batch.object(at: now, legacy: legacy(request)))
        case .ended(let batch):
            let status = batch.status(at: now)
            if status == .cancelled { return JSONResponse.make(200, batch.object(at: now, legacy: legacy(request))) }
            return JSONResponse.make(409, AzureError.badRequest("Cannot cancel a batch with status '\(status.rawValue)'."))
        }
    }
}
