import Crypto
import Foundation
import SwiftASN1
import _CryptoExtras

/// Decrypts a PKCS#8 `ENCRYPTED PRIVATE KEY` protected with PBES2 (PBKDF2 + AES-CBC), the
/// form `openssl pkcs8 -topk8 -v2 aes-256-cbc` and Azure Key Vault exports produce.
enum EncryptedPrivateKey {
    static let pbes2 = "1.2.840.113549.1.5.13"
    static let pbkdf2 = "1.2.840.113549.1.5.12"
    static let hmacSHA1 = "1.2.840.113549.2.7"
    static let hmacSHA256 = "1.2.840.113549.2.9"
    static let aesCBC: [String: Int] = ["2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32]

    static func decrypt(_ der: [UInt8], password: String, path: String) throws(AuthError) -> [UInt8] {
        func fail(_ reason: String) -> AuthError {
            AuthError(.misconfigured, credential: "certificate", "cannot decrypt the key in \(path): \(reason)")
        }
        do {
            let root = try DER.parse(der)
            guard let outer = sequence(root), outer.count == 2, let algorithm = sequence(outer[0]), algorithm.count == 2,
                oid(algorithm[0]) == pbes2, let parameters = sequence(algorithm[1]), parameters.count == 2,
                let kdf = sequence(parameters[0]), kdf.count == 2, oid(kdf[0]) == pbkdf2,
                let kdfParameters = sequence(kdf[1]), kdfParameters.count >= 2,
                let salt = octets(kdfParameters[0]), let rounds = integer(kdfParameters[1]),
                let cipher = sequence(parameters[1]), cipher.count == 2, let cipherOID = oid(cipher[0]),
                let keySize = aesCBC[cipherOID], let iv = octets(cipher[1]), let encrypted = octets(outer[1])
            else {
                throw fail("only PBES2 with PBKDF2 and AES-CBC is supported (openssl pkcs8 -topk8 -v2 aes-256-cbc)")
            }
            var prf = hmacSHA1
            if let last = kdfParameters.last, let prfSequence = sequence(last), let prfOID = prfSequence.first.flatMap(oid) { prf = prfOID }
            let hash: KDF.Insecure.PBKDF2.HashFunction = prf == hmacSHA256 ? .sha256 : .insecureSHA1
            let key = try KDF.Insecure.PBKDF2.deriveKey(
                from: Array(password.utf8), salt: salt, using: hash, outputByteCount: keySize, unsafeUncheckedRounds: rounds
            )
            let plain = try AES._CBC.decrypt(encrypted, using: key, iv: AES._CBC.IV(ivBytes: iv))
            return Array(plain)
        } catch let error as AuthError {
            throw error
        } catch {
            throw fail("wrong AZURE_CLIENT_CERTIFICATE_PASSWORD, or an unsupported format")
        }
    }

    static func sequence(_ node: ASN1Node) -> [ASN1Node]? {
        guard case .constructed(let children) = node.content else { return nil }
        return Array(children)
    }

    static func oid(_ node: ASN1Node) -> String? {
        (try? ASN1ObjectIdentifier(derEncoded: node)).map { $0.description }
    }

    static func octets(_ node: ASN1Node) -> [UInt8]? {
        (try? ASN1OctetString(derEncoded: node)).map { Array($0.bytes) }
    }

    static func integer(_ node: ASN1Node) -> Int? {
        try? Int(derEncoded: node)
    }
}
