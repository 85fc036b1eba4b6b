import AsyncHTTPClient
import FoundryAuth
import Logging
import Foundation
import NIOCore
import NIOHTTP1

/// `check`: before a long run, every target signs in, lists its resource's deployments where
/// the service offers that, and answers one 1-token request per deployment the job's rows
/// use; each (target, deployment) gets one line: ok, or what is wrong and the fix.
public struct CheckReport: Sendable {
    /// One target and deployment, checked.
    public struct Line: Sendable, Equatable {
        public var target: String
        /// The row model and the deployment it is sent to on the target (nil: the sign-in failed first).
        public var model: String?
        public var deployment: String?
        public var ok: Bool
        /// What answered, or what is wrong.
        public var detail: String
        public var fix: String?
    }

    public var job: String
    public var lines: [Line]

    public var allOK: Bool { lines.allSatisfy(\.ok) }
    public var exitStatus: ExitStatus { allOK ? .success : .stopped }

    public var text: String {
        var out: [String] = []
        for line in lines {
            let place = [line.target, line.deployment ?? "-"].joined(separator: "  ")
            out.append("\(line.ok ? "ok  " : "FAIL")  \(place)  \(line.detail)")
            if let fix = line.fix { out.append("      fix: \(fix)") }
        }
        out.append(allOK ? "\(job): every target is ready" : "\(job): \(lines.count { !$0.ok }) of \(lines.count) checks failed")
        return out.joined(separator: "\n")
    }

    public var json: JSONValue {
        .object([
            ("job", .string(job)), ("ok", .bool(allOK)),
            (
                "checks",
                .array(
                    lines.map { line in
                        .object([
                            ("target", .string(line.target)), ("model", line.model.map(JSONValue.string) ?? .null),
                            ("deployment", line.deployment.map(JSONValue.string) ?? .null), ("ok", .bool(line.ok)),
                            ("detail", .string(line.detail)), ("fix", line.fix.map(JSONValue.string) ?? .null),
                        ])
                    }
                )
            ),
        ])
    }
}

/// The checks behind `check`, one target at a time.
enum ServiceCheck {
    /// The API version the deployments listing is asked with when the target names none.
    static let listingVersion = "2022-12-01"

    /// The models (and APIs) the job's rows use: the job file's, those of rows loaded, and
    /// those Batch API lines of the input files name (read, not loaded).
    static func models(of session: JobSession) async throws -> [(String, ServiceAPI)] {
        var models = session.job.knownModels.map { ($0, session.job.api) }
        func add(_ model: String, _ api: ServiceAPI) {
            if !models.contains(where: { $0.0 == model }) { models.append((model, api)) }
        }
        for group in try await session.queue.pendingGroups(now: .distantFuture) { add(group.model, group.api) }
        for file in session.paths.inputs {
            guard var reader = try? LineReader(path: file) else { continue }
            while let bytes = reader.next() {
                // Only a Batch API line names its own model; a cheap test before the parse.
                guard bytes.count < 1 << 20, String(decoding: bytes, as: UTF8.self).contains(#""model""#),
                    case .success(let line) = InputLine.parse(bytes, defaultID: ""), case .batch(let api, let body) = line.payload,
                    let model = body["model"]?.stringValue
                else { continue }
                add(model, api)
            }
        }
        return models
    }

    /// Checks every target of `service` for the models `session`'s rows use.
    static func run(session: JobSession, service: ServiceSession) async throws -> CheckReport {
        let models = try await models(of: session)
        let job = session.job
        var lines: [CheckReport.Line] = []
        for connected in service.targets {
            let spec = connected.spec
            let served = models.filter { spec.serves($0.0) }
            let who: String
            do {
                switch connected.target.authorization {
                case .apiKey: who = "api-key from \(spec.apiKeyEnv)"
                case .none: who = "no credential"
                case .bearer: who = try await AuthReport.describe(connected.target).split(separator: "\n").first.map(String.init) ?? ""
                }
            } catch {
                let reason = (error as? FatalCondition)?.message ?? "\(error)"
                lines.append(
                    .init(
                        target: spec.name, model: nil, deployment: nil, ok: false, detail: reason.split(separator: "\n").joined(separator: " "),
                        fix: "check the credential of auth: \(spec.auth.rawValue) (foundry-batch auth says more)"
                    )
                )
                continue
            }
            let transport = HTTPTransport(http: service.http, target: connected.target, timeout: session.settings.limits.timeout)
            let listed = await deployments(of: connected.target, transport: transport)
            if served.isEmpty {
                // Nothing of this job goes here: still say whether the credential is taken.
                let detail = listed.map { "signed in (\($0.count) deployments listed); no row of this job goes to this target" } ?? "no row of this job goes to this target; \(who)"
                lines.append(.init(target: spec.name, model: nil, deployment: nil, ok: true, detail: detail))
                continue
            }
            var probed: Set<String> = []
            for (model, api) in served {
                // The online deployment, and for a batch job the Batch deployment instead
                // (it takes no online request: the listing and the Batch API are checked).
                if job.engine != .batch {
                    let deployment = spec.deployment(for: model)
                    if probed.insert(deployment).inserted {
                        lines.append(
                            await probe(
                                model: model, deployment: deployment, api: api, spec: spec, target: connected.target, transport: transport, who: who,
                                listed: listed, pooled: job.isPooled
                            )
                        )
                    }
                }
                if job.engine != .online {
                    let deployment = job.batch.deployment(for: model, on: spec)
                    if probed.insert("batch:" + deployment).inserted {
                        lines.append(await batchAccess(model: model, deployment: deployment, spec: spec, service: service, target: connected.target, listed: listed, session: session))
                    }
                }
            }
        }
        return CheckReport(job: session.job.name, lines: lines)
    }

    /// A Batch deployment: listed by the resource (where it lists), and the Batch API answering.
    static func batchAccess(
        model: String, deployment: String, spec: JobFile.Target, service: ServiceSession, target: ServiceTarget, listed: [String]?,
        session: JobSession
    ) async -> CheckReport.Line {
        func line(_ ok: Bool, _ detail: String, fix: String? = nil) -> CheckReport.Line {
            .init(target: spec.name, model: model, deployment: deployment, ok: ok, detail: "batch: " + detail, fix: fix)
        }
        if let listed, !listed.contains(deployment) {
            return line(
                false, "deployment '\(deployment)' is not on \(target.baseURL); it lists: \(listed.isEmpty ? "none" : listed.joined(separator: ", "))",
                fix: "create a Global or Data-zone Batch deployment '\(deployment)' there, or set batch.deployment"
            )
        }
        let limits = session.settings.limits
        var client = BatchClient(http: service.http, target: target, name: spec.name, timeout: limits.timeout, maxRetryWait: limits.maxRetryWait, logger: .init(label: "foundry-batch.check"))
        client.maxTries = 1
        do {
            _ = try await client.call(.GET, client.url("batches", query: [("limit", "1")]), what: "the list of batches")
            return line(true, "the Batch API answers\(listed == nil ? "" : " and the deployment is listed")")
        } catch let condition as FatalCondition {
            let parts = condition.message.split(separator: "\n", maxSplits: 1).map(String.init)
            return line(false, parts.first ?? condition.message, fix: parts.count > 1 ? parts[1] : nil)
        } catch {
            return line(false, "the Batch API did not answer: \(error)")
        }
    }

    /// The deployments the resource lists; nil where the service offers no listing.
    static func deployments(of target: ServiceTarget, transport: HTTPTransport) async -> [String]? {
        guard !target.hasOwnPath else { return nil }
        let version = target.apiVersion ?? listingVersion
        let url = "\(target.baseURL)/openai/deployments?api-version=\(version.addingPercentEncoding(withAllowedCharacters: ServiceTarget.queryValueAllowed) ?? version)"
        var bearer: String?
        if case .bearer(let provider) = target.authorization { bearer = try? await provider.token().token }
        let (answer, _) = await transport.get(url, bearer: bearer)
        guard case .response(200, _, let bytes, _) = answer, let body = ServiceBody.decode(bytes), case .array(let items)? = body.json["data"] else {
            return nil
        }
        return items.compactMap { $0["id"]?.stringValue }
    }

    /// One request with a 1-token answer, judged as a run would judge it.
    static func probe(
        model: String, deployment: String, api: ServiceAPI, spec: JobFile.Target, target: ServiceTarget, transport: HTTPTransport, who: String,
        listed: [String]?, pooled: Bool
    ) async -> CheckReport.Line {
        let body: JSONValue =
            switch api {
            case .chat: .object([("model", .string(deployment)), ("messages", .array([.object([("role", .string("user")), ("content", .string("ping"))])])), ("max_tokens", .int(1))])
            case .responses: .object([("model", .string(deployment)), ("input", .string("ping")), ("max_output_tokens", .int(16))])
            case .embeddings: .object([("model", .string(deployment)), ("input", .string("ping"))])
            }
        let row = ClaimedRow(seq: 0, id: "check", variant: "", api: api, deployment: deployment, body: body.jsonText, attempts: 0, estimatedTokens: 1)
        var bearer: String?
        if case .bearer(let provider) = target.authorization { bearer = try? await provider.token().token }
        let (answer, _) = await transport.send(row, bearer: bearer)
        let url = target.url(api: api, deployment: deployment)
        func line(_ ok: Bool, _ detail: String, fix: String? = nil) -> CheckReport.Line {
            .init(target: spec.name, model: model, deployment: deployment, ok: ok, detail: detail, fix: fix)
        }
        let latency: String =
            switch answer {
            case .response(_, _, _, let ms), .timedOut(let ms), .connectionFailed(_, let ms), .tooLarge(_, let ms): "\(Int(ms.rounded())) ms"
            case .refused: "-"
            }
        switch RetryPolicy.classify(answer, deployment: deployment, url: url) {
        case .success:
            return line(true, "answered in \(latency); \(who)")
        case .permanent(let error) where error.statusCode == 400 && isParameterRefusal(error):
            // The deployment answered and the identity may call it; only the probe's own
            // parameters were refused (a reasoning model refuses max_tokens, say).
            return line(true, "reachable (the 1-token probe's parameters were refused: \(error.message.prefix(120))); \(who)")
        case .permanent(let error):
            return line(false, "HTTP \(error.statusCode.map(String.init) ?? "-") \(error.code): \(error.message.prefix(200))", fix: "check endpoint: and api_version:")
        case .unauthorized(let error):
            let secret: String =
                switch target.authorization {
                case .apiKey: "the key in \(spec.apiKeyEnv)"
                case .bearer(let provider): "the token of \(provider.credential.name)"
                case .none: "no credential (auth: none)"
                }
            return line(false, "the credential was rejected (HTTP 401): \(error.message.prefix(200))", fix: "check \(secret): it must belong to this resource's tenant or be a key of this resource")
        case .fatal where answer.isDeploymentNotFound:
            let there = listed.map { "; it lists: \($0.isEmpty ? "none" : $0.joined(separator: ", "))" } ?? ""
            return line(
                false, "deployment '\(deployment)' is not on \(target.baseURL) (HTTP 404 DeploymentNotFound)\(there)",
                fix: "deploy \(model) there as '\(deployment)', or name the deployment in \(pooled ? "targets[\(spec.name)].deployment" : "deployment:")"
            )
        case .fatal(let condition):
            let parts = condition.message.split(separator: "\n", maxSplits: 1).map(String.init)
            return line(false, parts.first ?? condition.message, fix: parts.count > 1 ? parts[1] : nil)
        case .retry(let delay, let error, let throttled):
            if throttled {
                let until = delay.map { " until " + RowDecision.clockTime(Date().addingTimeInterval($0)) } ?? ""
                return line(false, "the quota is used up\(until) (HTTP 429: \(error.message.prefix(160)))", fix: "wait, or raise the deployment's tokens-per-minute quota")
            }
            return line(false, "no answer: \(error.message.prefix(200)) (\(error.code))", fix: "check endpoint: and the network (proxy, firewall, private endpoint) between here and the resource")
        }
    }
}

extension ServiceAnswer {
    /// Whether the service said the deployment does not exist (Azure's 404 `DeploymentNotFound`).
    var isDeploymentNotFound: Bool {
        guard case .response(404, _, let bytes, _) = self else { return false }
        return ServiceBody.decode(bytes)?.error?.code == "DeploymentNotFound"
    }
}

extension ServiceCheck {
    /// Whether a 400 refused only the probe's parameters (its token cap), not the deployment.
    static func isParameterRefusal(_ error: RowError) -> Bool {
        let text = (error.code + " " + error.message).lowercased()
        return ["unsupported_parameter", "unsupported_value", "max_tokens", "max_completion_tokens", "max_output_tokens"].contains { text.contains($0) }
    }
}

extension HTTPTransport {
    /// A GET of `url` with the target's credential, within the timeout: the deployments listing.
    func get(_ url: String, bearer: String?) async -> (answer: ServiceAnswer, clientRequestID: String) {
        let clientRequestID = UUID().uuidString.lowercased()
        if target.authorization.carriesSecret, !(URL(string: url).map(TransportSecurity.maySendSecret) ?? false) {
            return (.refused(reason: "refusing to send a credential over plain http"), clientRequestID)
        }
        let exchange = launch(.GET, url, body: nil, bearer: bearer, clientRequestID: clientRequestID, on: clients[0], upTo: 8 << 20)
        return (await exchange.answer(), clientRequestID)
    }
}
