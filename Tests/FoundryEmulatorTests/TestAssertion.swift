import Crypto
import Foundation
import _CryptoExtras

/// Builds client assertions the way a certificate credential does, independently of FoundryAuth.
enum TestAssertion {
    static func make(key pem: String, clientID: String, audience: String, lifetime: TimeInterval = 300, pss: Bool = false) throws -> String {
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        let header = try JSONSerialization.data(withJSONObject: ["alg": pss ? "PS256" : "RS256", "typ": "JWT"])
        let now = Date().timeIntervalSince1970
        let claims = try JSONSerialization.data(
            withJSONObject: ["aud": audience, "iss": clientID, "sub": clientID, "jti": UUID().uuidString, "nbf": Int(now), "exp": Int(now + lifetime)]
        )
        let input = encode(header) + "." + encode(claims)
        let signature = try key.signature(for: Data(input.utf8), padding: pss ? .PSS : .insecurePKCS1v1_5)
        return input + "." + encode(signature.rawRepresentation)
    }

    static func encode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
