import Foundation

/// A bearer token and when it stops working.
///
/// Its `description` never shows the token itself, so printing or logging an
/// `AccessToken` by accident leaks nothing.
public struct AccessToken: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The token. Send it in an `Authorization: Bearer` header; never log or store it.
    public let token: String
    public let expiresOn: Date
    /// When the issuer suggests refreshing (Entra's `refresh_in`), if it said.
    public let refreshOn: Date?

    public init(token: String, expiresOn: Date, refreshOn: Date? = nil) {
        self.token = token
        self.expiresOn = expiresOn
        self.refreshOn = refreshOn
    }

    public var description: String { "AccessToken(expires \(expiresOn), token redacted)" }
    public var debugDescription: String { description }

    /// The token's claims (tenant, app, object id), when it is a JWT. Nothing is verified.
    public var claims: TokenClaims? { TokenClaims(jwt: token) }
}

/// The claims of an Entra access token that a user may want to see.
public struct TokenClaims: Sendable, Equatable {
    public var tenantID: String?
    public var appID: String?
    public var objectID: String?
    public var audience: String?

    init?(jwt: String) {
        let parts = jwt.split(separator: ".")
        guard parts.count >= 2, let data = Base64URL.decode(parts[1]),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        tenantID = object["tid"] as? String
        appID = (object["appid"] ?? object["azp"]) as? String
        objectID = object["oid"] as? String
        audience = object["aud"] as? String
    }
}

/// base64url without padding, as JWTs use it.
enum Base64URL {
    static func encode(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
