import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// A self-signed RSA certificate for an app registration, to try certificate sign-in
/// against the emulator.
public struct EmulatorCertificate: Sendable {
    /// The certificate alone, PEM: what an app registration holds.
    public var certificatePEM: String
    /// The private key, PKCS#8 PEM.
    public var privateKeyPEM: String

    /// Key and certificate in one PEM, as `AZURE_CLIENT_CERTIFICATE_PATH` expects.
    public var combinedPEM: String { privateKeyPEM + "\n" + certificatePEM + "\n" }

    /// Makes a fresh 2048-bit RSA key and a certificate valid for a day.
    public static func selfSigned(commonName: String = "foundry-batch-emulator") throws -> EmulatorCertificate {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName { CommonName(commonName) }
        let now = Date()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-60),
            notValidAfter: now.addingTimeInterval(86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .sha256WithRSAEncryption,
            extensions: Certificate.Extensions {},
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
        return EmulatorCertificate(
            certificatePEM: try certificate.serializeAsPEM().pemString,
            privateKeyPEM: key.pkcs8PEMRepresentation
        )
    }
}
