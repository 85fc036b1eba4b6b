import Foundation
import NIOHTTP1
import Testing
@testable import FoundryEmulator

@Suite struct EntraTests {
    let tenant = EmulatorConfiguration.demoTenantID
    let client = EmulatorConfiguration.demoClientID
    let scope = "https://cognitiveservices.azure.com/.default"

    func tokenRequest(_ emulator: Emulator, tenant: String? = nil, _ fields: [String: String]) async throws -> Wire.Answer {
        try await emulator.wire.form("/\(tenant ?? self.tenant)/oauth2/v2.0/token", fields)
    }

    func secretFields(secret: String = EmulatorConfiguration.secret, client: String? = nil, scope: String? = nil) -> [String: String] {
        ["grant_type": "client_credentials", "client_id": client ?? self.client, "client_secret": secret, "scope": scope ?? self.scope]
    }

    @Test func clientSecretGetsABearerTokenInEntrasShape() async throws {
        try await Emulator.withRunning(.testing { $0.tokenTTL = 120 }) { emulator in
            let answer = try await tokenRequest(emulator, secretFields())
            #expect(answer.status == 200)
            #expect(answer.json["token_type"] as? String == "Bearer")
            #expect(answer.json["expires_in"] as? Int == 120)
            #expect(answer.json["ext_expires_in"] as? Int == 120)
            let token = try #require(answer.json["access_token"] as? String)
            #expect(token.split(separator: ".").count == 3)
            #expect(emulator.stats.tokenRequests["client_secret"] == 1)
        }
    }

    /// Quoted from Entra: each error carries its AADSTS code first, and the tracing fields.
    @Test(arguments: [
        ("wrong secret", 401, "invalid_client", 7000215),
        ("expired secret", 401, "invalid_client", 7000222),
        ("unknown app", 400, "unauthorized_client", 700016),
        ("unknown tenant", 400, "invalid_request", 90002),
        ("bad scope", 400, "invalid_scope", 70011),
    ])
    func signInErrorsUseEntrasShape(_ situation: String, status: Int, error: String, code: Int) async throws {
        try await Emulator.withRunning(.testing { $0.clients[0].secretExpired = situation == "expired secret" }) { emulator in
            let answer: Wire.Answer
            switch situation {
            case "wrong secret": answer = try await tokenRequest(emulator, secretFields(secret: "nope"))
            case "unknown app": answer = try await tokenRequest(emulator, secretFields(client: "99999999-0000-0000-0000-000000000000"))
            case "unknown tenant": answer = try await tokenRequest(emulator, tenant: "contoso-missing", secretFields())
            case "bad scope": answer = try await tokenRequest(emulator, secretFields(scope: "https://graph.microsoft.com/.default"))
            default: answer = try await tokenRequest(emulator, secretFields())
            }
            #expect(answer.status == status)
            #expect(answer.json["error"] as? String == error)
            #expect((answer.json["error_description"] as? String)?.hasPrefix("AADSTS\(code):") == true)
            #expect(answer.json["error_codes"] as? [Int] == [code])
            for field in ["timestamp", "trace_id", "correlation_id"] {
                #expect(answer.json[field] is String, "\(field)")
            }
        }
    }

    @Test func certificateAssertionIsCheckedAgainstTheRegisteredCertificate() async throws {
        let certificate = try EmulatorCertificate.selfSigned()
        let other = try EmulatorCertificate.selfSigned()
        try await Emulator.withRunning(.testing { $0.clients[0].certificatePEM = certificate.certificatePEM }) { emulator in
            let audience = "\(emulator.baseURL)/\(tenant)/oauth2/v2.0/token"
            func assertionFields(_ assertion: String) -> [String: String] {
                [
                    "grant_type": "client_credentials", "client_id": client, "scope": scope,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": assertion,
                ]
            }
            let good = try TestAssertion.make(key: certificate.privateKeyPEM, clientID: client, audience: audience)
            #expect(try await tokenRequest(emulator, assertionFields(good)).status == 200)
            let pss = try TestAssertion.make(key: certificate.privateKeyPEM, clientID: client, audience: audience, pss: true)
            #expect(try await tokenRequest(emulator, assertionFields(pss)).status == 200)
            let forged = try TestAssertion.make(key: other.privateKeyPEM, clientID: client, audience: audience)
            let rejected = try await tokenRequest(emulator, assertionFields(forged))
            #expect(rejected.status == 401)
            #expect(rejected.json["error_codes"] as? [Int] == [700027])
            let expired = try TestAssertion.make(key: certificate.privateKeyPEM, clientID: client, audience: audience, lifetime: -10)
            #expect(try await tokenRequest(emulator, assertionFields(expired)).json["error_codes"] as? [Int] == [700024])
            let elsewhere = try TestAssertion.make(key: certificate.privateKeyPEM, clientID: client, audience: "https://example.com/token")
            #expect(try await tokenRequest(emulator, assertionFields(elsewhere)).json["error_codes"] as? [Int] == [50027])
            #expect(emulator.stats.tokenRequests["client_assertion"] == 5)
        }
    }

    @Test func federatedTokenSignsInForWorkloadIdentity() async throws {
        try await Emulator.withRunning(.testing()) { emulator in
            let federated = emulator.federatedToken(clientID: client)
            let answer = try await tokenRequest(
                emulator,
                [
                    "grant_type": "client_credentials", "client_id": client, "scope": scope,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": federated,
                ]
            )
            #expect(answer.status == 200)
            let wrongApp = emulator.federatedToken(clientID: "someone-else")
            let refused = try await tokenRequest(
                emulator,
                [
                    "grant_type": "client_credentials", "client_id": client, "scope": scope,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": wrongApp,
                ]
            )
            #expect(refused.status == 400)
        }
    }

    @Test func managedIdentityInAppServiceAndIMDSShapes() async throws {
        try await Emulator.withRunning(.testing { $0.identityHeader = "header-secret"; $0.tokenTTL = 600 }) { emulator in
            let resource = "resource=https%3A%2F%2Fcognitiveservices.azure.com"
            let appService = try await emulator.wire.send(.GET, "/msi/token?api-version=2019-08-01&\(resource)", headers: [("X-IDENTITY-HEADER", "header-secret")])
            #expect(appService.status == 200)
            let expiresOn = try #require(appService.json["expires_on"] as? String)
            #expect(Int(expiresOn).map { abs(Double($0) - Date().timeIntervalSince1970 - 600) < 5 } == true)
            #expect(appService.json["token_type"] as? String == "Bearer")
            let wrongHeader = try await emulator.wire.send(.GET, "/msi/token?api-version=2019-08-01&\(resource)", headers: [("X-IDENTITY-HEADER", "nope")])
            #expect(wrongHeader.status == 401)

            let imds = try await emulator.wire.send(.GET, "/metadata/identity/oauth2/token?api-version=2018-02-01&\(resource)", headers: [("Metadata", "true")])
            #expect(imds.status == 200)
            #expect(imds.json["expires_in"] is String, "IMDS sends numbers as strings")
            #expect(imds.json["expires_on"] is String)
            let noMetadata = try await emulator.wire.send(.GET, "/metadata/identity/oauth2/token?api-version=2018-02-01&\(resource)")
            #expect(noMetadata.status == 400)
            #expect(noMetadata.json["error"] as? String == "invalid_request")
            let otherIdentity = try await emulator.wire.send(
                .GET, "/metadata/identity/oauth2/token?api-version=2018-02-01&\(resource)&client_id=unknown", headers: [("Metadata", "true")]
            )
            #expect(otherIdentity.status == 400)
            #expect(emulator.stats.tokenRequests["imds"] == 3)
            #expect(emulator.stats.tokenRequests["managed_identity"] == 2)
        }
    }
}
