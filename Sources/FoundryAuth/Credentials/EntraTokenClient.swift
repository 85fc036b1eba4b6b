import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Posts client-credential requests to Entra's v2.0 token endpoint and explains its errors.
struct EntraTokenClient: Sendable {
    let http: HTTPClient
    let authorityHost: String
    let tenantID: String
    let clientID: String
    let credential: String
    var timeout: TimeAmount = .seconds(30)

    var tokenEndpoint: String { "\(authorityHost)/\(tenantID)/oauth2/v2.0/token" }

    /// Requests a token with the given client authentication fields (secret or assertion).
    func requestToken(scope: String, authentication: [(String, String)]) async throws(AuthError) -> AccessToken {
        guard let url = URL(string: tokenEndpoint), TransportSecurity.maySendSecret(to: url) else {
            throw AuthError(
                .misconfigured, credential: credential,
                "refusing to send credentials to \(authorityHost) over plain http; use https (AZURE_AUTHORITY_HOST) — plain http is allowed only to this machine"
            )
        }
        var fields = [("grant_type", "client_credentials"), ("client_id", clientID), ("scope", scope)]
        fields += authentication
        let body = fields.map { "\($0.0)=\(FormEncoding.escape($0.1))" }.joined(separator: "&")
        var request = HTTPClientRequest(url: tokenEndpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let (status, object) = try await HTTPJSON.send(request, http: http, timeout: timeout, credential: credential, target: "Entra ID at \(authorityHost)")
        guard status == 200 else { throw explain(status: status, object) }
        guard let token = object["access_token"] as? String, let expiresIn = HTTPJSON.lifetime(object["expires_in"]) else {
            throw AuthError(.network, credential: credential, "Entra ID answered 200 without a usable access_token and expires_in")
        }
        let received = Date()
        return try AccessToken.checked(
            token: token, expiresOn: received.addingTimeInterval(expiresIn),
            refreshOn: HTTPJSON.lifetime(object["refresh_in"]).map { received.addingTimeInterval($0) }, credential: credential, now: received
        )
    }

    /// Turns Entra's error answer into a message that names the cause and the fix.
    func explain(status: Int, _ object: [String: Any]) -> AuthError {
        let code = (object["error_codes"] as? [Int])?.first
        let description = (object["error_description"] as? String).map { ServiceText.printable(Self.firstSentence($0), limit: 500) } ?? "HTTP \(status)"
        let app = "app \(clientID)"
        let message: String
        switch code {
        case 7000215:
            message = "the client secret is wrong for \(app) (AADSTS7000215). AZURE_CLIENT_SECRET must hold the secret's Value, not its Secret ID; create a new secret under App registrations > Certificates & secrets if unsure."
        case 7000222:
            message = "the client secret of \(app) has expired (AADSTS7000222). Create a new secret under App registrations > \(clientID) > Certificates & secrets and put its value in AZURE_CLIENT_SECRET."
        case 700016:
            message = "\(app) does not exist in tenant \(tenantID) (AADSTS700016). Check AZURE_CLIENT_ID (the Application (client) ID) and AZURE_TENANT_ID."
        case 90002:
            message = "tenant \(tenantID) was not found (AADSTS90002). Check AZURE_TENANT_ID, and AZURE_AUTHORITY_HOST for sovereign clouds."
        case 70011:
            message = "Entra refused the scope (AADSTS70011): \(description)"
        case 700027, 700024, 50027:
            message = "Entra refused the certificate assertion of \(app) (AADSTS\(code ?? 0)): \(description) Upload the certificate's public part to the app registration and check this machine's clock."
        case 700211, 700212, 700213, 700222:
            message = "Entra refused the federated token of \(app) (AADSTS\(code ?? 0)): \(description) Check the app's federated credential (issuer, subject, audience api://AzureADTokenExchange)."
        default:
            let error = (object["error"] as? String).flatMap(ServiceText.code) ?? "HTTP \(status)"
            message = "Entra ID refused the sign-in of \(app) (\(error)\(code.map { ", AADSTS\($0)" } ?? "")): \(description)"
        }
        return AuthError(status >= 500 ? .network : .rejected, credential: credential, message, aadsts: code)
    }

    /// "AADSTS7000215: Invalid client secret provided. Ensure ... Trace ID: ..." -> up to the trace.
    static func firstSentence(_ text: String) -> String {
        var trimmed = text
        if let trace = trimmed.range(of: " Trace ID:") { trimmed = String(trimmed[..<trace.lowerBound]) }
        if let colon = trimmed.range(of: ": "), trimmed.hasPrefix("AADSTS") { trimmed = String(trimmed[colon.upperBound...]) }
        return trimmed.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// `application/x-www-form-urlencoded` escaping.
enum FormEncoding {
    static let allowed: CharacterSet = {
        var set = CharacterSet.alphanumerics
        set.insert(charactersIn: "-._~")
        return set
    }()

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// Sends a request and reads a JSON object back, turning transport failures into ``AuthError``.
enum HTTPJSON {
    static func send(
        _ request: HTTPClientRequest, http: HTTPClient, timeout: TimeAmount, credential: String, target: String
    ) async throws(AuthError) -> (Int, [String: Any]) {
        let answer: (status: Int, location: String?, data: Data)
        do {
            // One deadline for the head and the body: a server that stalls after its
            // headers must not hold the run.
            answer = try await withDeadline(seconds: Double(timeout.nanoseconds) / 1e9, on: http.eventLoopGroup.any()) {
                let response = try await http.execute(request, timeout: timeout)
                let body = try await response.body.collect(upTo: 1 << 20)
                return (Int(response.status.code), response.headers.first(name: "location"), Data(body.readableBytesView))
            }
        } catch {
            throw AuthError(.network, credential: credential, "cannot reach \(target): \(describe(error)). Check the network, proxy and firewall.")
        }
        if (300..<400).contains(answer.status) {
            throw AuthError(.misconfigured, credential: credential, TransportSecurity.redirectRefusal(status: answer.status, location: answer.location, what: target))
        }
        let object = (try? JSONSerialization.jsonObject(with: answer.data)) as? [String: Any] ?? [:]
        return (answer.status, object)
    }

    /// A short reason for a transport error, without request contents.
    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError {
            switch client {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "timed out"
            case .remoteConnectionClosed: return "the connection was closed"
            default: return ServiceText.caseName(of: client)
            }
        }
        if error is DeadlineExceeded { return "timed out" }
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        return text
    }

    /// A number sent as a number or as a string (IMDS sends strings); nil unless finite.
    static func number(_ value: Any?) -> Double? {
        let number: Double? =
            switch value {
            case let number as Int: Double(number)
            case let number as Double: number
            case let text as String: Double(text.trimmingCharacters(in: .whitespaces))
            default: nil
            }
        guard let number, number.isFinite else { return nil }
        return number
    }

    /// An `expires_on` epoch as a date, clamped like ``lifetime(_:)``.
    static func expiry(epoch value: Any?, now: Date = Date()) -> Date? {
        guard let epoch = number(value) else { return nil }
        return Date(timeIntervalSince1970: min(epoch, now.timeIntervalSince1970 + Bounded.maxSeconds))
    }

    /// A token lifetime in seconds as the issuer sent it: finite and positive, else nil;
    /// an absurd one is clamped (``Bounded/maxSeconds``) so that dates built from it hold.
    static func lifetime(_ value: Any?) -> Double? {
        guard let seconds = number(value), seconds > 0 else { return nil }
        return min(seconds, Bounded.maxSeconds)
    }
}
