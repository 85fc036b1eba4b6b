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

    /// A token as an issuer sent it, refused when it cannot be used: empty, holding a
    /// character that cannot go in a header (a line break would inject one), or expiring
    /// within a second of arrival (a storm of token requests would follow).
    ///
    /// - Throws: ``AuthError`` of kind `.network` naming `credential`, never quoting the token.
    public static func checked(
        token: String, expiresOn: Date, refreshOn: Date? = nil, credential: String, now: Date = Date()
    ) throws(AuthError) -> AccessToken {
        guard TransportSecurity.isHeaderSafe(token) else {
            throw AuthError(.network, credential: credential, "the token answer held an empty access token, or one with characters that cannot go in an HTTP header")
        }
        guard expiresOn.timeIntervalSince(now) > 1 else {
            throw AuthError(.network, credential: credential, "the token answer held a token that has expired or expires within a second; check this machine's clock")
        }
        return AccessToken(token: token, expiresOn: expiresOn, refreshOn: refreshOn.flatMap { $0 < expiresOn ? $0 : nil })
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
        // Claims are the issuer's text and reach a terminal: printable only.
        func claim(_ value: Any?) -> String? { (value as? String).map { ServiceText.printable($0, limit: 200) } }
        tenantID = claim(object["tid"])
        appID = claim(object["appid"] ?? object["azp"])
        objectID = claim(object["oid"])
        audience = claim(object["aud"])
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
