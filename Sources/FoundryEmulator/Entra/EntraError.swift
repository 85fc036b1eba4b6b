import Foundation

/// Entra's OAuth error, in the shape the v2.0 token endpoint returns.
///
/// ```json
/// {"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided...",
///  "error_codes":[7000215],"timestamp":"2026-01-01 00:00:00Z","trace_id":"…","correlation_id":"…",
///  "error_uri":"https://login.microsoftonline.com/error?code=7000215"}
/// ```
struct EntraError: Sendable {
    var status: Int
    var error: String
    var code: Int
    var description: String

    func body() -> [String: Any] {
        let trace = UUID().uuidString.lowercased()
        let correlation = UUID().uuidString.lowercased()
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss'Z'"
        let stamp = formatter.string(from: Date())
        return [
            "error": error,
            "error_description": "AADSTS\(code): \(description) Trace ID: \(trace) Correlation ID: \(correlation) Timestamp: \(stamp)",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": "https://login.microsoftonline.com/error?code=\(code)",
        ]
    }

    static func unknownTenant(_ tenant: String) -> EntraError {
        EntraError(
            status: 400, error: "invalid_request", code: 90002,
            description: "Tenant '\(tenant)' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        )
    }

    static func unknownApp(_ client: String, tenant: String) -> EntraError {
        EntraError(
            status: 400, error: "unauthorized_client", code: 700016,
            description: "Application with identifier '\(client)' was not found in the directory '\(tenant)'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        )
    }

    static func wrongSecret(_ client: String) -> EntraError {
        EntraError(
            status: 401, error: "invalid_client", code: 7000215,
            description: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '\(client)'."
        )
    }

    static func expiredSecret(_ client: String) -> EntraError {
        EntraError(
            status: 401, error: "invalid_client", code: 7000222,
            description: "The provided client secret keys for app '\(client)' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
        )
    }

    static func badScope(_ scope: String) -> EntraError {
        EntraError(
            status: 400, error: "invalid_scope", code: 70011,
            description: "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope \(scope) is not valid."
        )
    }

    static func missing(_ parameter: String) -> EntraError {
        EntraError(
            status: 400, error: "invalid_request", code: 900144,
            description: "The request body must contain the following parameter: '\(parameter)'."
        )
    }

    static func unsupportedGrant(_ grant: String) -> EntraError {
        EntraError(status: 400, error: "unsupported_grant_type", code: 70003, description: "The app requested an unsupported grant type '\(grant)'.")
    }

    static func badAssertion(_ reason: String) -> EntraError {
        EntraError(status: 401, error: "invalid_client", code: 700027, description: "Client assertion failed signature validation. \(reason)")
    }

    static func expiredAssertion() -> EntraError {
        EntraError(status: 401, error: "invalid_client", code: 700024, description: "Client assertion is not within its valid time range.")
    }

    static func badAudience(_ audience: String) -> EntraError {
        EntraError(status: 401, error: "invalid_client", code: 50027, description: "Invalid JWT token. The audience '\(audience)' of the client assertion is not the token endpoint.")
    }

    static func noCertificate(_ client: String) -> EntraError {
        EntraError(status: 401, error: "invalid_client", code: 700027, description: "Client assertion contains an invalid signature. The key was not found for app '\(client)'.")
    }

    static func badFederatedToken(_ reason: String) -> EntraError {
        EntraError(status: 400, error: "invalid_request", code: 700211, description: "No matching federated identity record found for presented assertion issuer. \(reason)")
    }
}
