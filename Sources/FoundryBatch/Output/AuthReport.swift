import FoundryAuth
import Foundation

/// What `foundry-batch auth` prints: the credential that answered and what its token says.
public enum AuthReport {
    /// Signs in (for Entra credentials) and describes the result; never shows the token.
    ///
    /// - Throws: ``FatalCondition`` when signing in fails, with the credential's explanation.
    public static func describe(_ target: ServiceTarget) async throws -> String {
        switch target.authorization {
        case .none:
            return "auth: none (requests carry no credential)"
        case .apiKey:
            return "auth: api-key from AZURE_OPENAI_API_KEY, sent as the api-key header (checked by the service on the first request)"
        case .bearer(let provider):
            let token: AccessToken
            do {
                token = try await provider.token()
            } catch {
                throw FatalCondition("sign-in failed: \(error.description)")
            }
            let formatter = ISO8601DateFormatter()
            formatter.timeZone = .current
            var lines = [
                "credential: \(provider.credential.name)",
                "token expires: \(formatter.string(from: token.expiresOn)) (in \(Bounded.int(token.expiresOn.timeIntervalSinceNow)) s)",
            ]
            if let claims = token.claims {
                if let tenant = claims.tenantID { lines.append("tenant: \(tenant)") }
                if let app = claims.appID { lines.append("app: \(app)") }
                if let object = claims.objectID { lines.append("object id: \(object)") }
                if let audience = claims.audience { lines.append("audience: \(audience)") }
            }
            return lines.joined(separator: "\n")
        }
    }
}
