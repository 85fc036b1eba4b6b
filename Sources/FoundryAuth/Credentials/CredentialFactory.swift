import AsyncHTTPClient

/// Builds the credential a job's `auth:` names, from the environment.
public enum CredentialFactory {
    /// - Parameter kind: `default`, `client-secret`, `certificate`, `workload-identity`,
    ///   `managed-identity` or `azure-cli`.
    /// - Throws: ``AuthError`` naming what is missing.
    public static func make(kind: String, environment: CredentialEnvironment, http: HTTPClient) throws(AuthError) -> any TokenCredential {
        switch kind {
        case "default": return DefaultAzureCredential(environment: environment, http: http)
        case "client-secret": return try ClientSecretCredential(environment: environment, http: http)
        case "certificate": return try ClientCertificateCredential(environment: environment, http: http)
        case "workload-identity": return try WorkloadIdentityCredential(environment: environment, http: http)
        case "managed-identity": return ManagedIdentityCredential(environment: environment, http: http)
        case "azure-cli": return AzureCLICredential(environment: environment)
        default: throw AuthError(.misconfigured, credential: kind, "unknown credential kind '\(kind)'")
        }
    }
}
