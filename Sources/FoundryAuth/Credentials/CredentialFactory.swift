import AsyncHTTPClient

/// The credential kinds a job's `auth:` names, in the job file's words.
public enum CredentialKind: String, Sendable, CaseIterable {
    case `default`
    case apiKey = "api-key"
    case clientSecret = "client-secret"
    case certificate
    case workloadIdentity = "workload-identity"
    case managedIdentity = "managed-identity"
    case azureCLI = "azure-cli"
    case none
}

/// Builds the credential a job's `auth:` names, from the environment.
public enum CredentialFactory {
    /// - Parameter kind: one that signs in with Entra ID (not `api-key` or `none`).
    /// - Throws: ``AuthError`` naming what is missing.
    public static func make(kind: CredentialKind, environment: CredentialEnvironment, http: HTTPClient) throws(AuthError) -> any TokenCredential {
        switch kind {
        case .default: return DefaultAzureCredential(environment: environment, http: http)
        case .clientSecret: return try ClientSecretCredential(environment: environment, http: http)
        case .certificate: return try ClientCertificateCredential(environment: environment, http: http)
        case .workloadIdentity: return try WorkloadIdentityCredential(environment: environment, http: http)
        case .managedIdentity: return ManagedIdentityCredential(environment: environment, http: http)
        case .azureCLI: return AzureCLICredential(environment: environment)
        case .apiKey, .none: throw AuthError(.misconfigured, credential: kind.rawValue, "'\(kind.rawValue)' is not an Entra ID credential")
        }
    }
}
