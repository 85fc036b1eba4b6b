import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// Checks a JWT client assertion as Entra does: signature by the registered certificate's
/// key (RS256 or PS256), `aud` the token endpoint, `iss` = `sub` = the client id, `exp` ahead.
enum ClientAssertion {
    struct Parsed {
        var header: [String: Any]
        var claims: [String: Any]
        var signingInput: Data
        var signature: Data
    }

    static func parse(_ token: String) -> Parsed? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Base64URL.decode(parts[0]), let claims = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2]),
            let headerObject = try? JSONSerialization.jsonObject(with: header) as? [String: Any],
            let claimObject = try? JSONSerialization.jsonObject(with: claims) as? [String: Any]
        else { return nil }
        return Parsed(header: headerObject, claims: claimObject, signingInput: Data("\(parts[0]).\(parts[1])".utf8), signature: signature)
    }

    /// Returns the Entra error for a bad assertion, or `nil` when it is good.
    static func verify(
        _ token: String, client: EmulatorConfiguration.Client, tokenEndpoints: [String], now: Date
    ) -> EntraError? {
        guard let parsed = parse(token) else { return .badAssertion("The assertion is not a JWT.") }
        guard let pem = client.certificatePEM else { return .noCertificate(client.clientID) }
        guard let certificate = try? Certificate(pemEncoded: pem), let key = _RSA.Signing.PublicKey(certificate.publicKey) else {
            return .noCertificate(client.clientID)
        }
        let signature = _RSA.Signing.RSASignature(rawRepresentation: parsed.signature)
        let valid: Bool
        switch parsed.header["alg"] as? String {
        case "RS256": valid = key.isValidSignature(signature, for: parsed.signingInput, padding: .insecurePKCS1v1_5)
        case "PS256": valid = key.isValidSignature(signature, for: parsed.signingInput, padding: .PSS)
        default: return .badAssertion("Unsupported alg '\(parsed.header["alg"] ?? "none")'.")
        }
        guard valid else { return .badAssertion("The signature does not match the registered certificate.") }
        if let thumbprint = parsed.header["x5t#S256"] as? String {
            let der = (try? certificate.serializeAsPEM().derBytes) ?? []
            guard thumbprint == Base64URL.encode(Data(SHA256.hash(data: der))) else {
                return .badAssertion("x5t#S256 does not match the registered certificate.")
            }
        }
        guard let audience = parsed.claims["aud"] as? String, tokenEndpoints.contains(audience) else {
            return .badAudience(parsed.claims["aud"] as? String ?? "")
        }
        guard parsed.claims["iss"] as? String == client.clientID, parsed.claims["sub"] as? String == client.clientID else {
            return .badAssertion("iss and sub must both be the client id.")
        }
        guard let exp = parsed.claims["exp"] as? Double, exp > now.timeIntervalSince1970 else { return .expiredAssertion() }
        if let nbf = parsed.claims["nbf"] as? Double, nbf > now.timeIntervalSince1970 + 300 { return .expiredAssertion() }
        return nil
    }
}
