import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Signs in as the managed identity of the Azure host this runs on.
///
/// App Service, Functions and Container Apps set `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`;
/// elsewhere (VMs, AKS pod identity) the Instance Metadata Service answers at
/// 169.254.169.254, or at `AZURE_POD_IDENTITY_AUTHORITY_HOST`. `AZURE_CLIENT_ID` picks a
/// user-assigned identity.
public struct ManagedIdentityCredential: TokenCredential, CustomStringConvertible {
    public enum Source: Sendable, Equatable {
        case appService(endpoint: String, header: String)
        case imds(host: String)
    }

    public static let resource = "https://cognitiveservices.azure.com"
    let source: Source
    let clientID: String?
    let http: HTTPClient
    /// IMDS retries (404, 410, 429, 5xx): attempts and the first delay, doubled each time.
    var retryAttempts = 5
    var retryDelay: TimeInterval = 0.8
    /// How long to wait for IMDS to answer at all; short in the default chain, where its
    /// absence is the common case.
    var probeTimeout: TimeAmount = .seconds(5)

    public var name: String {
        let kind = switch source {
        case .appService: "managed-identity (App Service endpoint"
        case .imds: "managed-identity (IMDS"
        }
        return kind + (clientID.map { ", client \($0))" } ?? ")")
    }

    public var description: String { name }

    public init(source: Source, clientID: String?, http: HTTPClient, retryDelay: TimeInterval = 0.8, probeTimeout: TimeAmount = .seconds(5)) {
        self.source = source
        self.clientID = clientID
        self.http = http
        self.retryDelay = retryDelay
        self.probeTimeout = probeTimeout
    }

    public init(environment: CredentialEnvironment, http: HTTPClient, probeTimeout: TimeAmount = .seconds(5)) {
        let source: Source
        if let endpoint = environment["IDENTITY_ENDPOINT"], let header = environment["IDENTITY_HEADER"] {
            source = .appService(endpoint: endpoint, header: header)
        } else {
            var host = environment["AZURE_POD_IDENTITY_AUTHORITY_HOST"] ?? "http://169.254.169.254"
            if !host.contains("://") { host = "http://" + host }
            while host.hasSuffix("/") { host.removeLast() }
            source = .imds(host: host)
        }
        self.init(source: source, clientID: environment["AZURE_CLIENT_ID"], http: http, probeTimeout: probeTimeout)
    }

    public func getToken(scope: String) async throws(AuthError) -> AccessToken {
        let resource = scope.hasSuffix("/.default") ? String(scope.dropLast(9)) : scope
        var query = "resource=\(FormEncoding.escape(resource))"
        if let clientID { query += "&client_id=\(FormEncoding.escape(clientID))" }
        switch source {
        case .appService(let endpoint, let header):
            guard let url = URL(string: endpoint), TransportSecurity.maySendSecret(to: url) else {
                throw AuthError(.misconfigured, credential: "managed-identity", "IDENTITY_ENDPOINT must be https or a loopback http address, got \(endpoint)")
            }
            var request = HTTPClientRequest(url: endpoint + (endpoint.contains("?") ? "&" : "?") + "api-version=2019-08-01&" + query)
            request.headers.add(name: "X-IDENTITY-HEADER", value: header)
            let (status, object) = try await HTTPJSON.send(
                request, http: http, timeout: .seconds(30), credential: "managed-identity", target: "the managed identity endpoint"
            )
            guard status == 200 else {
                throw AuthError(
                    status == 400 || status == 401 || status == 403 ? .rejected : .network, credential: "managed-identity",
                    "the managed identity endpoint answered \(status): \(ServiceText.printable("\(object["message"] ?? object["error_description"] ?? "no detail")", limit: 500)). Check that this app has a managed identity\(clientID.map { " with client id \($0)" } ?? "")."
                )
            }
            return try token(from: object)
        case .imds(let host):
            var request = HTTPClientRequest(url: "\(host)/metadata/identity/oauth2/token?api-version=2018-02-01&\(query)")
            request.headers.add(name: "Metadata", value: "true")
            var delay = retryDelay
            for attempt in 1...retryAttempts {
                let (status, object): (Int, [String: Any])
                do {
                    (status, object) = try await HTTPJSON.send(request, http: http, timeout: probeTimeout, credential: "managed-identity", target: "IMDS at \(host)")
                } catch {
                    throw AuthError(.unavailable, credential: "managed-identity", "no managed identity endpoint answered at \(host) (not running on Azure, or no identity assigned)")
                }
                if status == 200 { return try token(from: object) }
                // IMDS answers 400 when this machine has no identity, or not the one asked
                // for: the Azure SDKs take that as "not available here", and the default
                // chain goes on to the Azure CLI.
                if status == 400 {
                    let detail = ServiceText.printable(object["error_description"] as? String ?? "identity not found", limit: 500)
                    throw AuthError(
                        .unavailable, credential: "managed-identity",
                        "IMDS at \(host) has no managed identity for this machine\(clientID.map { " with client id \($0)" } ?? "") (400: \(detail)). Assign one to the VM, or use another credential."
                    )
                }
                // IMDS documents these as passing: identity not yet ready (404, 410), throttled (429), 5xx.
                let passing = status == 404 || status == 410 || status == 429 || status >= 500
                if !passing || attempt == retryAttempts {
                    let detail = ServiceText.printable(object["error_description"] as? String ?? "HTTP \(status)", limit: 500)
                    throw AuthError(
                        status == 400 ? .rejected : .network, credential: "managed-identity",
                        "IMDS refused the token request (\(status)): \(detail). Check the identity is assigned to this machine\(clientID.map { " (client id \($0))" } ?? "")."
                    )
                }
                try? await Task.sleep(for: .seconds(delay))
                delay *= 2
            }
            throw AuthError(.network, credential: "managed-identity", "IMDS did not answer")
        }
    }

    func token(from object: [String: Any]) throws(AuthError) -> AccessToken {
        guard let token = object["access_token"] as? String else {
            throw AuthError(.network, credential: "managed-identity", "the identity endpoint answered without access_token")
        }
        let expires: Date
        if let expiry = HTTPJSON.expiry(epoch: object["expires_on"]) {
            expires = expiry
        } else if let seconds = HTTPJSON.lifetime(object["expires_in"]) {
            expires = Date().addingTimeInterval(seconds)
        } else {
            throw AuthError(.network, credential: "managed-identity", "the identity endpoint answered without expires_on")
        }
        return try AccessToken.checked(token: token, expiresOn: expires, credential: "managed-identity")
    }
}
