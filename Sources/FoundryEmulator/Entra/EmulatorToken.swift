import Crypto
import Foundation

/// Access tokens the emulated Entra issues: JWTs with Entra's claims, signed with HS256.
///
/// The data plane accepts only tokens this emulator signed, for the Cognitive Services
/// audience, not expired, so a client that keeps using a stale token gets Azure's 401.
struct EmulatorTokenIssuer: Sendable {
    static let audience = "https://cognitiveservices.azure.com"
    static let federatedAudience = "api://AzureADTokenExchange"
    let key: SymmetricKey

    init() {
        key = SymmetricKey(size: .bits256)
    }

    struct Claims: Sendable {
        var tenantID: String
        var appID: String
        var audience: String
        var expires: Date
        var subject: String
    }

    func mint(_ claims: Claims, now: Date = Date()) -> String {
        let header = #"{"alg":"HS256","typ":"JWT"}"#
        let payload: [String: Any] = [
            "aud": claims.audience,
            "iss": "https://sts.windows.net/\(claims.tenantID)/",
            "iat": Int(now.timeIntervalSince1970),
            "nbf": Int(now.timeIntervalSince1970),
            // Rounded up: a token lives at least as long as the expires_in it was issued with.
            "exp": Int(claims.expires.timeIntervalSince1970.rounded(.up)),
            "appid": claims.appID,
            "oid": claims.subject,
            "sub": claims.subject,
            "tid": claims.tenantID,
            "jti": UUID().uuidString,
        ]
        let body = (try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])) ?? Data()
        let signingInput = Base64URL.encode(Data(header.utf8)) + "." + Base64URL.encode(body)
        let signature = HMAC<SHA256>.authenticationCode(for: Data(signingInput.utf8), using: key)
        return signingInput + "." + Base64URL.encode(Data(signature))
    }

    enum Verdict: Equatable {
        case valid(appID: String, tenantID: String)
        case invalid
        case expired
        case wrongAudience
    }

    func verify(_ token: String, audience: String = EmulatorTokenIssuer.audience, now: Date = Date()) -> Verdict {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = Base64URL.decode(parts[2]),
            HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: Data("\(parts[0]).\(parts[1])".utf8), using: key),
            let payload = Base64URL.decode(parts[1]),
            let claims = try? JSONSerialization.jsonObject(with: payload) as? [String: Any],
            let exp = claims["exp"] as? Int
        else { return .invalid }
        guard (claims["aud"] as? String) == audience else { return .wrongAudience }
        guard Double(exp) > now.timeIntervalSince1970 else { return .expired }
        return .valid(appID: claims["appid"] as? String ?? "", tenantID: claims["tid"] as? String ?? "")
    }
}
