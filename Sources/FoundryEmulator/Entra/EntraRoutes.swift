import Foundation
import Hummingbird

/// The emulated Entra ID: client credentials at `/{tenant}/oauth2/v2.0/token`, and managed
/// identity in the App Service (`/msi/token`) and IMDS (`/metadata/identity/oauth2/token`) shapes.
struct EntraRoutes {
    static let scope = "https://cognitiveservices.azure.com/.default"
    static let resource = "https://cognitiveservices.azure.com"
    let state: EmulatorState

    func register(on router: Router<BasicRequestContext>) {
        router.post("/:tenant/oauth2/v2.0/token") { request, context in
            let tenant = context.parameters.get("tenant") ?? ""
            return try await token(request, tenant: tenant)
        }
        router.get("/msi/token") { request, _ in appServiceToken(request) }
        router.get("/metadata/identity/oauth2/token") { request, _ in imdsToken(request) }
    }

    func token(_ request: Request, tenant: String) async throws -> Response {
        let form = Self.parseForm(try await request.collectBody())
        let configuration = state.configuration
        let grantLabel = form["client_assertion"] != nil ? "client_assertion" : "client_secret"
        func fail(_ error: EntraError) -> Response {
            state.recordTokenRequest(grant: grantLabel, status: error.status)
            return JSONResponse.make(error.status, error.body())
        }
        if configuration.tokenEndpointDown {
            return fail(EntraError(status: 500, error: "temporarily_unavailable", code: 90033, description: "A transient error has occurred. Please try again."))
        }
        guard configuration.clients.contains(where: { $0.tenantID == tenant }) else { return fail(.unknownTenant(tenant)) }
        guard let grant = form["grant_type"] else { return fail(.missing("grant_type")) }
        guard grant == "client_credentials" else { return fail(.unsupportedGrant(grant)) }
        guard let scope = form["scope"] else { return fail(.missing("scope")) }
        guard scope == Self.scope else { return fail(.badScope(scope)) }
        guard let clientID = form["client_id"] else { return fail(.missing("client_id")) }
        guard let client = configuration.clients.first(where: { $0.tenantID == tenant && $0.clientID == clientID }) else {
            return fail(.unknownApp(clientID, tenant: tenant))
        }
        let now = Date()
        if let assertion = form["client_assertion"] {
            guard form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" else {
                return fail(.missing("client_assertion_type"))
            }
            if let parsed = ClientAssertion.parse(assertion), parsed.claims["aud"] as? String == EmulatorTokenIssuer.federatedAudience {
                switch state.issuer.verify(assertion, audience: EmulatorTokenIssuer.federatedAudience, now: now) {
                case .valid(let appID, _) where appID == clientID: break
                case .expired: return fail(.expiredAssertion())
                default: return fail(.badFederatedToken("The federated token was not issued for app '\(clientID)'."))
                }
            } else {
                let host = request.head.authority ?? "127.0.0.1"
                let endpoints = [
                    "http://\(host)/\(tenant)/oauth2/v2.0/token",
                    "https://login.microsoftonline.com/\(tenant)/oauth2/v2.0/token",
                ]
                if let error = ClientAssertion.verify(assertion, client: client, tokenEndpoints: endpoints, now: now) {
                    return fail(error)
                }
            }
        } else {
            guard let secret = form["client_secret"] else { return fail(.missing("client_assertion' or 'client_secret")) }
            guard let expected = client.secret, secret == expected else { return fail(.wrongSecret(clientID)) }
            if client.secretExpired { return fail(.expiredSecret(clientID)) }
        }
        let ttl = configuration.tokenTTL
        let token = state.issuer.mint(
            .init(tenantID: tenant, appID: clientID, audience: EmulatorTokenIssuer.audience, expires: now.addingTimeInterval(ttl), subject: clientID),
            now: now
        )
        state.recordTokenRequest(grant: grantLabel, status: 200)
        return JSONResponse.make(
            200, ["token_type": "Bearer", "expires_in": Int(ttl), "ext_expires_in": Int(ttl), "access_token": token]
        )
    }

    func managedIdentityToken(_ request: Request) -> (token: String, expires: Date)? {
        let configuration = state.configuration
        if let clientID = request.query("client_id"), clientID != configuration.managedIdentityClientID { return nil }
        let now = Date()
        let expires = now.addingTimeInterval(configuration.tokenTTL)
        let token = state.issuer.mint(
            .init(
                tenantID: EmulatorConfiguration.demoTenantID, appID: configuration.managedIdentityClientID,
                audience: EmulatorTokenIssuer.audience, expires: expires, subject: configuration.managedIdentityClientID
            ),
            now: now
        )
        return (token, expires)
    }

    static func resourceMatches(_ request: Request) -> Bool {
        let resource = request.query("resource")?.removingPercentEncoding ?? ""
        return resource == Self.resource || resource == Self.resource + "/"
    }

    /// App Service / Container Apps: `IDENTITY_ENDPOINT` with the `X-IDENTITY-HEADER` secret.
    func appServiceToken(_ request: Request) -> Response {
        let configuration = state.configuration
        guard request.headers[.identityHeader] == configuration.identityHeader else {
            state.recordTokenRequest(grant: "managed_identity", status: 401)
            return JSONResponse.make(401, ["statusCode": 401, "message": "The X-IDENTITY-HEADER is missing or does not match."])
        }
        guard Self.resourceMatches(request) else {
            state.recordTokenRequest(grant: "managed_identity", status: 400)
            return JSONResponse.make(400, ["statusCode": 400, "message": "The resource parameter is missing or not valid."])
        }
        guard let issued = managedIdentityToken(request) else {
            state.recordTokenRequest(grant: "managed_identity", status: 400)
            return JSONResponse.make(400, ["statusCode": 400, "message": "No managed identity with the requested client_id."])
        }
        state.recordTokenRequest(grant: "managed_identity", status: 200)
        return JSONResponse.make(
            200,
            [
                "access_token": issued.token, "expires_on": String(Int(issued.expires.timeIntervalSince1970)),
                "resource": Self.resource, "token_type": "Bearer", "client_id": configuration.managedIdentityClientID,
            ]
        )
    }

    /// Azure Instance Metadata Service: needs `Metadata: true`; numbers come back as strings.
    func imdsToken(_ request: Request) -> Response {
        guard request.headers[.metadata]?.lowercased() == "true" else {
            state.recordTokenRequest(grant: "imds", status: 400)
            return JSONResponse.make(400, ["error": "invalid_request", "error_description": "Required metadata header not specified"])
        }
        if state.takeIMDSFailure() {
            state.recordTokenRequest(grant: "imds", status: 410)
            return JSONResponse.make(410, ["error": "unknown_error", "error_description": "Identity not yet available; try again later"])
        }
        guard Self.resourceMatches(request) else {
            state.recordTokenRequest(grant: "imds", status: 400)
            return JSONResponse.make(400, ["error": "invalid_resource", "error_description": "AADSTS500011: The resource principal was not found."])
        }
        guard let issued = managedIdentityToken(request) else {
            state.recordTokenRequest(grant: "imds", status: 400)
            return JSONResponse.make(400, ["error": "invalid_request", "error_description": "Identity not found"])
        }
        state.recordTokenRequest(grant: "imds", status: 200)
        let now = Int(Date().timeIntervalSince1970)
        let expires = Int(issued.expires.timeIntervalSince1970)
        return JSONResponse.make(
            200,
            [
                "access_token": issued.token, "refresh_token": "", "expires_in": String(expires - now),
                "expires_on": String(expires), "not_before": String(now), "resource": Self.resource, "token_type": "Bearer",
            ]
        )
    }

    static func parseForm(_ data: Data) -> [String: String] {
        var form: [String: String] = [:]
        for pair in String(decoding: data, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text)
            }
            form[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return form
    }
}
