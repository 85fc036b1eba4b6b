import AsyncHTTPClient
import Foundation

/// Signs in with a federated token from a file (Kubernetes workload identity, GitHub OIDC):
/// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`.
///
/// The file is read again for every token request, since the platform rotates it.
public struct WorkloadIdentityCredential: TokenCredential, CustomStringConvertible {
    let client: EntraTokenClient
    let tokenFile: String

    public var name: String { "workload-identity (app \(client.clientID), tenant \(client.tenantID))" }
    public var description: String { name }

    public init(tenantID: String, clientID: String, tokenFile: String, authorityHost: String, http: HTTPClient) {
        client = EntraTokenClient(http: http, authorityHost: authorityHost, tenantID: tenantID, clientID: clientID, credential: "workload-identity")
        self.tokenFile = tokenFile
    }

    public init(environment: CredentialEnvironment, http: HTTPClient) throws(AuthError) {
        let values = try environment.require(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"], for: "workload-identity")
        self.init(tenantID: values[0], clientID: values[1], tokenFile: values[2], authorityHost: environment.authorityHost, http: http)
    }

    public func getToken(scope: String) async throws(AuthError) -> AccessToken {
        guard let data = FileManager.default.contents(atPath: tokenFile),
            let assertion = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !assertion.isEmpty
        else {
            throw AuthError(.misconfigured, credential: "workload-identity", "cannot read a token from AZURE_FEDERATED_TOKEN_FILE (\(tokenFile))")
        }
        return try await client.requestToken(
            scope: scope,
            authentication: [
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion),
            ]
        )
    }
}
