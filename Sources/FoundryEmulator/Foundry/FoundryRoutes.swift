import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// The emulated Foundry data plane: v1 paths (deployment in `model`) and deployment paths
/// with `api-version`, authorised by `api-key` or an Entra bearer token.
struct FoundryRoutes {
    let state: EmulatorState

    enum Operation: String, Sendable {
        case chat, responses, embeddings

        var azureName: String {
            switch self {
            case .chat: "ChatCompletions_Create"
            case .responses: "Responses_Create"
            case .embeddings: "Embeddings_Create"
            }
        }

        var dataAction: String {
            switch self {
            case .chat: "chat/completions"
            case .responses: "responses"
            case .embeddings: "embeddings"
            }
        }
    }

    func register(on router: Router<BasicRequestContext>) {
        router.post("/openai/v1/chat/completions") { request, _ in try await infer(request, .chat, deployment: nil) }
        router.post("/openai/v1/responses") { request, _ in try await infer(request, .responses, deployment: nil) }
        router.post("/openai/v1/embeddings") { request, _ in try await infer(request, .embeddings, deployment: nil) }
        router.post("/openai/deployments/:deployment/chat/completions") { request, context in
            try await infer(request, .chat, deployment: context.parameters.get("deployment") ?? "")
        }
        router.post("/openai/deployments/:deployment/embeddings") { request, context in
            try await infer(request, .embeddings, deployment: context.parameters.get("deployment") ?? "")
        }
        router.get("/openai/deployments") { request, _ in deployments(request) }
        // Files and batches (the Batch API), on both path styles.
        BatchRoutes(state: state).register(on: router)
    }

    /// The principal behind the request, or Azure's 401 answer.
    func authorize(_ request: Request, operation: Operation, path: String) -> Response? {
        let configuration = state.configuration
        if let key = request.headers[.apiKey] {
            return configuration.apiKeys.contains(key) ? nil : JSONResponse.make(401, AzureError.invalidKey)
        }
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else {
            return JSONResponse.make(401, AzureError.invalidToken)
        }
        guard case .valid(let appID, _) = state.issuer.verify(String(header.dropFirst(7))) else {
            return JSONResponse.make(401, AzureError.invalidToken)
        }
        let hasRole =
            appID == configuration.managedIdentityClientID
            ? configuration.managedIdentityHasRole
            : configuration.clients.first(where: { $0.clientID == appID })?.hasRole ?? false
        guard hasRole else {
            return JSONResponse.make(401, AzureError.permissionDenied(principal: appID, operation: operation.dataAction, path: path))
        }
        return nil
    }

    func deploymentExists(_ name: String) -> Bool {
        let deployments = state.configuration.deployments
        return deployments.contains("*") || deployments.contains(name)
    }

    func infer(_ request: Request, _ operation: Operation, deployment pathDeployment: String?) async throws -> Response {
        let started = Date()
        let clientRequestID = request.headers[.clientRequestID]
        state.begin(clientRequestID: clientRequestID, now: started)
        let route = operation.rawValue
        var headers = HTTPFields()
        let requestID = UUID().uuidString.lowercased()
        headers[.apimRequestID] = requestID
        headers[.requestID] = requestID
        if let clientRequestID { headers[.clientRequestID] = clientRequestID }
        func finish(_ status: Int, _ object: Any, promptKey: String? = nil, tokens: Int = 0) -> Response {
            state.end(route: route, status: status, promptKey: promptKey, tokens: tokens)
            return JSONResponse.make(status, object, headers: headers)
        }

        let template = pathDeployment == nil ? "/openai/v1/\(operation.dataAction)" : "/openai/deployments/{deployment-id}/\(operation.dataAction)"
        if let denied = authorize(request, operation: operation, path: template) {
            state.end(route: route, status: denied.status.code)
            var response = denied
            response.headers.append(contentsOf: headers)
            return response
        }
        let apiVersion = request.query("api-version")
        if pathDeployment != nil, apiVersion == nil { return finish(404, AzureError.resourceNotFound) }
        let data = try await request.collectBody()
        guard let body = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return finish(400, AzureError.badRequest("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"))
        }
        let inference = InferenceRequest(body: body)
        guard let deployment = pathDeployment ?? inference.deployment else {
            return finish(400, AzureError.badRequest("you must provide a model parameter", param: "model"))
        }
        guard deploymentExists(deployment) else { return finish(404, AzureError.deploymentNotFound) }

        let promptKey = Self.promptKey(inference, deployment: deployment)
        switch state.fault(promptKey: promptKey, now: started) {
        case .throttle(let seconds):
            headers[.retryAfter] = String(max(Int(seconds.rounded(.up)), 1))
            headers[.retryAfterMs] = String(Int((seconds * 1000).rounded(.up)))
            let rounded = max(Int(seconds.rounded(.up)), 1)
            return finish(429, AzureError.rateLimited(operation: operation.azureName, apiVersion: apiVersion ?? "v1", tokens: false, seconds: rounded))
        case .drop:
            state.end(route: route, status: 0)
            return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: 256) { _ in throw DroppedConnection() })
        case .slow(let seconds):
            try await Task.sleep(for: .seconds(seconds))
        case .status(let code):
            return finish(code, code == 503 ? AzureError.unavailable : AzureError.serverError)
        case nil:
            break
        }

        let decision = state.admit(deployment: deployment, tokens: inference.estimatedTokens, promptKey: promptKey, now: Date())
        if let remaining = decision.remainingRequests { headers[.remainingRequests] = String(remaining) }
        if let remaining = decision.remainingTokens { headers[.remainingTokens] = String(remaining) }
        if !decision.allowed {
            let seconds = Int(decision.retryAfter.rounded(.up))
            headers[.retryAfter] = String(max(seconds, 1))
            headers[.retryAfterMs] = String(Int((decision.retryAfter * 1000).rounded(.up)))
            return finish(
                429,
                AzureError.rateLimited(
                    operation: operation.azureName, apiVersion: apiVersion ?? "v1", tokens: decision.kind == .tokens, seconds: max(seconds, 1)
                )
            )
        }
        if Self.isFiltered(inference, phrase: state.configuration.contentFilterPhrase) {
            return finish(400, AzureError.contentFilter)
        }
        let delay = state.jitter()
        if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }

        let faults = Self.outputFaults(operation, inference, deployment: deployment, dice: state.outputDice, configuration: state.configuration)
        let answer = Self.answer(
            operation, body: body, inference: inference, deployment: deployment, requestID: requestID, created: started, faults: faults
        )
        state.recordOutputFaults(faults)
        return finish(200, answer.body, promptKey: answer.promptKey, tokens: answer.tokens)
    }

    /// The key that tells repeated work: the same prompt to the same deployment.
    static func promptKey(_ inference: InferenceRequest, deployment: String) -> String {
        deployment + "\u{0}" + inference.promptText
    }

    /// Rolls the output knobs for a 200 answer, online or in a batch line; embeddings have no
    /// text to spoil, and roll nothing.
    static func outputFaults(
        _ operation: Operation, _ inference: InferenceRequest, deployment: String, dice: OutputDice, configuration: EmulatorConfiguration
    ) -> OutputFaults {
        guard operation != .embeddings else { return OutputFaults() }
        return dice.roll(
            promptKey: promptKey(inference, deployment: deployment), structured: inference.outputFormat != nil, configuration: configuration
        )
    }

    /// Whether the content filter refuses the prompt (400 `content_filter`).
    static func isFiltered(_ inference: InferenceRequest, phrase: String?) -> Bool {
        guard let phrase, !phrase.isEmpty else { return false }
        return inference.promptText.contains(phrase)
    }

    /// A 200 answer's body, with the tokens it serves and the key that tells repeated work.
    struct Answer {
        var body: [String: Any]
        var tokens: Int
        var promptKey: String
    }

    /// The body the online route answers 200 with.
    ///
    /// The Batch API builds each output line's `response.body` here too, so a row answered in a
    /// batch reads exactly as it would online (only `id` and `created` differ, as they do
    /// between two online answers).
    ///
    /// A request for structured output (``OutputFormat``) gets JSON text as its content; a
    /// `max_tokens` (`max_completion_tokens`, `max_output_tokens`) below the answer's length
    /// cuts it, as do `faults` rolled by the output knobs.
    static func answer(
        _ operation: Operation, body: [String: Any], inference: InferenceRequest, deployment: String, requestID: String, created started: Date,
        faults: OutputFaults = OutputFaults()
    ) -> Answer {
        let promptTokens = EmulatorAnswer.tokens(inference.promptText)
        let promptKey = Self.promptKey(inference, deployment: deployment)
        switch operation {
        case .embeddings:
            let inputs: [String] = (body["input"] as? [Any])?.map { InferenceRequest.text($0) } ?? [inference.lastUserText]
            let data = inputs.enumerated().map { index, text in
                ["object": "embedding", "index": index, "embedding": EmulatorAnswer.embedding(for: text)] as [String: Any]
            }
            return Answer(
                body: ["object": "list", "data": data, "model": deployment, "usage": ["prompt_tokens": promptTokens, "total_tokens": promptTokens]],
                tokens: promptTokens, promptKey: promptKey
            )
        case .chat, .responses:
            var text: String
            if let format = inference.outputFormat {
                text = format.content(for: inference.lastUserText)
                if faults.invalid { text = OutputFormat.broken(text) }
            } else {
                text = EmulatorAnswer.text(for: inference.lastUserText)
            }
            var completionTokens = EmulatorAnswer.tokens(text)
            var finishReason = "stop"
            if let cap = inference.maxTokens, cap < completionTokens {
                text = String(text.prefix(max(cap, 1) * 4))
                completionTokens = max(cap, 1)
                finishReason = "length"
            }
            if faults.truncated {
                // Read as an answer that ran into its cap: half the text, its tokens, `length`.
                text = String(text.prefix(text.count / 2))
                completionTokens = EmulatorAnswer.tokens(text)
                finishReason = "length"
            }
            let complete = finishReason == "stop"
            let created = Int(started.timeIntervalSince1970)
            let id = EmulatorJSON.hex(SHA256.hash(data: Data((promptKey + requestID).utf8)).prefix(12))
            var answer: [String: Any]
            if operation == .chat {
                answer = [
                    "id": "chatcmpl-\(id)", "object": "chat.completion", "created": created, "model": deployment,
                    "choices": [
                        ["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": finishReason, "logprobs": NSNull()] as [String: Any]
                    ],
                    "usage": ["prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens],
                    "system_fingerprint": NSNull(),
                ]
            } else {
                // A Responses answer cut short is `incomplete`, the message item too, and names
                // the cap it ran into; the emulator has no other reason than the token cap.
                let status = complete ? "completed" : "incomplete"
                let details: Any = complete ? NSNull() as Any : ["reason": "max_output_tokens"] as Any
                answer = [
                    "id": "resp_\(id)", "object": "response", "created_at": created, "status": status, "incomplete_details": details,
                    "model": deployment,
                    "output": [
                        [
                            "type": "message", "id": "msg_\(id)", "status": status, "role": "assistant",
                            "content": [["type": "output_text", "text": text, "annotations": [] as [Any]] as [String: Any]],
                        ] as [String: Any]
                    ],
                    "usage": ["input_tokens": promptTokens, "output_tokens": completionTokens, "total_tokens": promptTokens + completionTokens],
                ]
                // The service echoes the format asked for, plain text when none was.
                answer["text"] = (body["text"] as? [String: Any]) ?? ["format": ["type": "text"]]
            }
            return Answer(body: answer, tokens: promptTokens + completionTokens, promptKey: promptKey)
        }
    }

    func deployments(_ request: Request) -> Response {
        if let denied = authorize(request, operation: .chat, path: "/openai/deployments") { return denied }
        // Counted like every data-plane request: begin before end, or in-flight goes below zero.
        state.begin(clientRequestID: request.headers[.clientRequestID], now: Date())
        let data = state.configuration.deployments.filter { $0 != "*" }.map { name in
            ["id": name, "model": name, "object": "deployment", "status": "succeeded", "owner": "organization-owner"]
        }
        state.end(route: "deployments", status: 200)
        return JSONResponse.make(200, ["object": "list", "data": data])
    }
}
