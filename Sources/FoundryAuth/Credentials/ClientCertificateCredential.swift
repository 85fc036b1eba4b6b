import AsyncHTTPClient
import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// Signs in as an app registration with a certificate: a short-lived JWT client assertion
/// signed (PS256) with the certificate's key, carrying the certificate's `x5t#S256`.
///
/// `AZURE_CLIENT_CERTIFICATE_PATH` names a PEM file holding the private key (PKCS#8 or
/// PKCS#1; encrypted PKCS#8 with `AZURE_CLIENT_CERTIFICATE_PASSWORD`) and the certificate.
public struct ClientCertificateCredential: TokenCredential, CustomStringConvertible {
    let client: EntraTokenClient
    let key: _RSA.Signing.PrivateKey
    let thumbprintSHA256: String
    let thumbprintSHA1: String
    /// How long an assertion is valid; Entra wants it short.
    let assertionLifetime: TimeInterval = 600

    public var name: String { "certificate (app \(client.clientID), tenant \(client.tenantID))" }
    public var description: String { name }

    public init(
        tenantID: String, clientID: String, pemPath: String, password: String? = nil, authorityHost: String, http: HTTPClient
    ) throws(AuthError) {
        client = EntraTokenClient(http: http, authorityHost: authorityHost, tenantID: tenantID, clientID: clientID, credential: "certificate")
        guard let data = FileManager.default.contents(atPath: pemPath), let text = String(data: data, encoding: .utf8) else {
            throw AuthError(.misconfigured, credential: "certificate", "cannot read the certificate file \(pemPath) (AZURE_CLIENT_CERTIFICATE_PATH)")
        }
        let blocks = PEMBlock.parse(text)
        guard let certificateBlock = blocks.first(where: { $0.label == "CERTIFICATE" }) else {
            throw AuthError(.misconfigured, credential: "certificate", "\(pemPath) holds no CERTIFICATE block; it must contain the certificate and its private key")
        }
        do {
            _ = try Certificate(derEncoded: certificateBlock.der)
        } catch {
            throw AuthError(.misconfigured, credential: "certificate", "\(pemPath): the CERTIFICATE block is not a valid X.509 certificate")
        }
        key = try Self.privateKey(blocks, path: pemPath, password: password)
        thumbprintSHA256 = Base64URL.encode(Data(SHA256.hash(data: certificateBlock.der)))
        thumbprintSHA1 = Base64URL.encode(Data(Insecure.SHA1.hash(data: certificateBlock.der)))
    }

    /// From the environment; `.unavailable` names the missing variables.
    public init(environment: CredentialEnvironment, http: HTTPClient) throws(AuthError) {
        let values = try environment.require(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH"], for: "certificate")
        try self.init(
            tenantID: values[0], clientID: values[1], pemPath: values[2], password: environment["AZURE_CLIENT_CERTIFICATE_PASSWORD"],
            authorityHost: environment.authorityHost, http: http
        )
    }

    static func privateKey(_ blocks: [PEMBlock], path: String, password: String?) throws(AuthError) -> _RSA.Signing.PrivateKey {
        if let encrypted = blocks.first(where: { $0.label == "ENCRYPTED PRIVATE KEY" }) {
            guard let password else {
                throw AuthError(.misconfigured, credential: "certificate", "the key in \(path) is encrypted: set AZURE_CLIENT_CERTIFICATE_PASSWORD")
            }
            let der = try EncryptedPrivateKey.decrypt(encrypted.der, password: password, path: path)
            do {
                return try _RSA.Signing.PrivateKey(derRepresentation: der)
            } catch {
                throw AuthError(.misconfigured, credential: "certificate", "the decrypted key in \(path) is not an RSA key")
            }
        }
        guard let block = blocks.first(where: { $0.label == "PRIVATE KEY" || $0.label == "RSA PRIVATE KEY" }) else {
            throw AuthError(.misconfigured, credential: "certificate", "\(path) holds no private key; put the key (PEM) in the same file as the certificate")
        }
        do {
            return try _RSA.Signing.PrivateKey(derRepresentation: block.der)
        } catch {
            throw AuthError(.misconfigured, credential: "certificate", "the private key in \(path) is not an RSA key of 2048 bits or more")
        }
    }

    /// The signed client assertion for one token request.
    func assertion(now: Date = Date()) throws(AuthError) -> String {
        let header: [String: Any] = ["alg": "PS256", "typ": "JWT", "x5t#S256": thumbprintSHA256, "x5t": thumbprintSHA1]
        let issued = Int(now.timeIntervalSince1970)
        let claims: [String: Any] = [
            "aud": client.tokenEndpoint, "iss": client.clientID, "sub": client.clientID, "jti": UUID().uuidString,
            "nbf": issued, "iat": issued, "exp": issued + Int(assertionLifetime),
        ]
        do {
            let input =
                Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
                + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
            let signature = try key.signature(for: Data(input.utf8), padding: .PSS)
            return input + "." + Base64URL.encode(signature.rawRepresentation)
        } catch {
            throw AuthError(.misconfigured, credential: "certificate", "cannot sign the client assertion: \(error)")
        }
    }

    public func getToken(scope: String) async throws(AuthError) -> AccessToken {
        try await client.requestToken(
            scope: scope,
            authentication: [
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", try assertion()),
            ]
        )
    }
}

/// One `-----BEGIN X-----` ... `-----END X-----` block of a PEM file.
struct PEMBlock {
    var label: String
    var der: [UInt8]

    static func parse(_ text: String) -> [PEMBlock] {
        var blocks: [PEMBlock] = []
        var label: String?
        var body = ""
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") {
                label = String(line.dropFirst(11).dropLast(5))
                body = ""
            } else if line.hasPrefix("-----END "), let current = label {
                if let data = Data(base64Encoded: body) { blocks.append(PEMBlock(label: current, der: Array(data))) }
                label = nil
            } else if label != nil, !line.contains(":") {
                body += line
            }
        }
        return blocks
    }
}
