import AsyncHTTPClient

/// Signs in as an app registration with a client secret (`AZURE_TENANT_ID`,
/// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
public struct ClientSecretCredential: TokenCredential, CustomStringConvertible {
    let client: EntraTokenClient
    let secret: String

    public var name: String { "client-secret (app \(client.clientID), tenant \(client.tenantID))" }
    public var description: String { name }

    public init(tenantID: String, clientID: String, secret: String, authorityHost: String, http: HTTPClient) {
        client = EntraTokenClient(http: http, authorityHost: authorityHost, tenantID: tenantID, clientID: clientID, credential: "client-secret")
        self.secret = secret
    }

    /// From the environment; `.unavailable` names the missing variables.
    public init(environment: CredentialEnvironment, http: HTTPClient) throws(AuthError) {
        let values = try environment.require(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"], for: "client-secret")
        self.init(tenantID: values[0], clientID: values[1], secret: values[2], authorityHost: environment.authorityHost, http: http)
    }

    public func getToken(scope: String) async throws(AuthError) -> AccessToken {
        try await client.requestToken(scope: scope, authentication: [("client_secret", secret)])
    }
}
