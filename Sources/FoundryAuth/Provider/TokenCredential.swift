/// A source of access tokens: one way of signing in to Entra ID.
///
/// A credential fetches a new token every time it is asked; caching, refreshing ahead of
/// expiry and sharing between workers are the ``TokenProvider``'s job.
public protocol TokenCredential: Sendable {
    /// Which credential this is, for people: "client-secret (app 1111…, tenant 0000…)".
    /// Never contains a secret.
    var name: String { get }

    /// Signs in and returns a fresh token for `scope`.
    ///
    /// - Throws: ``AuthError``; `.unavailable` when this credential is not set up here
    ///   (the default chain then tries the next one).
    func getToken(scope: String) async throws(AuthError) -> AccessToken
}

/// The scope of Azure OpenAI / Foundry data-plane tokens.
public let cognitiveServicesScope = "https://cognitiveservices.azure.com/.default"
