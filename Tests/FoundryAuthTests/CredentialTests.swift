import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
@testable import FoundryAuth
@testable import FoundryEmulator

@Suite struct CredentialTests {
    @Test func clientSecretSignsInAndTheClaimsNameTenantAndApp() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let credential = try ClientSecretCredential(environment: emulator.secretEnvironment, http: .shared)
            let token = try await credential.getToken(scope: cognitiveServicesScope)
            #expect(token.claims?.tenantID == EmulatorConfiguration.demoTenantID)
            #expect(token.claims?.appID == EmulatorConfiguration.demoClientID)
            #expect(token.expiresOn > Date().addingTimeInterval(3000))
            #expect(!credential.name.contains(testSecret))
        }
    }

    @Test(arguments: [
        ("wrong", 7000215, "not its Secret ID"),
        ("expired", 7000222, "has expired"),
        ("app", 700016, "Check AZURE_CLIENT_ID"),
        ("tenant", 90002, "Check AZURE_TENANT_ID"),
    ])
    func entraErrorsNameTheCauseAndTheFixWithoutTheSecret(_ case: String, code: Int, fix: String) async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.clients[0].secretExpired = `case` == "expired" }) { emulator in
            let credential: ClientSecretCredential =
                switch `case` {
                case "wrong": emulator.secretCredential(secret: "not-the-secret-either")
                case "app": emulator.secretCredential(clientID: "22222222-0000-0000-0000-000000000000")
                case "tenant": emulator.secretCredential(tenant: "no-such-tenant")
                default: emulator.secretCredential()
                }
            do throws(AuthError) {
                _ = try await credential.getToken(scope: cognitiveServicesScope)
                Issue.record("expected AADSTS\(code)")
            } catch {
                #expect(error.aadsts == code)
                #expect(error.kind == .rejected)
                #expect(error.description.contains(fix), "\(error)")
                #expect(!error.description.contains(testSecret))
                #expect(!error.description.contains("not-the-secret-either"))
            }
        }
    }

    @Test func secretsAreNeverSentOverPlainHTTPToAnotherMachine() async throws {
        let credential = ClientSecretCredential(tenantID: "t", clientID: "c", secret: testSecret, authorityHost: "http://login.example.com", http: .shared)
        await #expect(throws: AuthError.self) { _ = try await credential.getToken(scope: cognitiveServicesScope) }
        do throws(AuthError) {
            _ = try await credential.getToken(scope: cognitiveServicesScope)
        } catch {
            #expect(error.kind == .misconfigured)
            #expect(error.message.contains("plain http"))
        }
        #expect(TransportSecurity.isLoopback("127.0.0.1") && TransportSecurity.isLoopback("[::1]") && TransportSecurity.isLoopback("localhost"))
        #expect(!TransportSecurity.isLoopback("10.0.0.1") && !TransportSecurity.isLoopback("127.example.com"))
    }

    @Test func certificateCredentialSignsAPS256AssertionTheEmulatorAccepts() async throws {
        let certificate = try EmulatorCertificate.selfSigned()
        let directory = NSTemporaryDirectory() + "fb-cert-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/app.pem"
        try certificate.combinedPEM.write(toFile: path, atomically: true, encoding: .utf8)
        try await Emulator.withRunning(emulatorConfiguration { $0.clients[0].certificatePEM = certificate.certificatePEM }) { emulator in
            let environment = CredentialEnvironment([
                "AZURE_TENANT_ID": EmulatorConfiguration.demoTenantID, "AZURE_CLIENT_ID": EmulatorConfiguration.demoClientID,
                "AZURE_CLIENT_CERTIFICATE_PATH": path, "AZURE_AUTHORITY_HOST": emulator.baseURL,
            ])
            let credential = try ClientCertificateCredential(environment: environment, http: .shared)
            let token = try await credential.getToken(scope: cognitiveServicesScope)
            #expect(token.claims?.appID == EmulatorConfiguration.demoClientID)
            #expect(emulator.stats.tokenRequests["client_assertion"] == 1)
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func anEncryptedKeyIsDecryptedWithThePassword() async throws {
        let certificate = try EmulatorCertificate.selfSigned()
        let directory = NSTemporaryDirectory() + "fb-cert-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try certificate.privateKeyPEM.write(toFile: directory + "/key.pem", atomically: true, encoding: .utf8)
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", directory + "/key.pem", "-out", directory + "/enc.pem", "-passout", "file:" + directory + "/pass"]
        try "correct horse".write(toFile: directory + "/pass", atomically: true, encoding: .utf8)
        try openssl.run()
        openssl.waitUntilExit()
        let encrypted = try String(contentsOfFile: directory + "/enc.pem", encoding: .utf8)
        #expect(encrypted.contains("ENCRYPTED PRIVATE KEY"))
        try (encrypted + certificate.certificatePEM).write(toFile: directory + "/app.pem", atomically: true, encoding: .utf8)
        try await Emulator.withRunning(emulatorConfiguration { $0.clients[0].certificatePEM = certificate.certificatePEM }) { emulator in
            let credential = try ClientCertificateCredential(
                tenantID: EmulatorConfiguration.demoTenantID, clientID: EmulatorConfiguration.demoClientID, pemPath: directory + "/app.pem",
                password: "correct horse", authorityHost: emulator.baseURL, http: .shared
            )
            _ = try await credential.getToken(scope: cognitiveServicesScope)
            #expect(throws: AuthError.self) {
                try ClientCertificateCredential(
                    tenantID: "t", clientID: "c", pemPath: directory + "/app.pem", password: "wrong", authorityHost: emulator.baseURL, http: .shared
                )
            }
        }
    }

    @Test func workloadIdentityRereadsTheTokenFile() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let file = NSTemporaryDirectory() + "fb-federated-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: file) }
            try "not-a-token".write(toFile: file, atomically: true, encoding: .utf8)
            let credential = WorkloadIdentityCredential(
                tenantID: EmulatorConfiguration.demoTenantID, clientID: EmulatorConfiguration.demoClientID, tokenFile: file,
                authorityHost: emulator.baseURL, http: .shared
            )
            await #expect(throws: AuthError.self) { _ = try await credential.getToken(scope: cognitiveServicesScope) }
            try emulator.federatedToken(clientID: EmulatorConfiguration.demoClientID).write(toFile: file, atomically: true, encoding: .utf8)
            let token = try await credential.getToken(scope: cognitiveServicesScope)
            #expect(token.claims?.appID == EmulatorConfiguration.demoClientID)
        }
    }

    @Test func managedIdentityThroughTheAppServiceEndpoint() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.identityHeader = "mi-header"; $0.tokenTTL = 900 }) { emulator in
            let credential = ManagedIdentityCredential(
                environment: CredentialEnvironment(["IDENTITY_ENDPOINT": emulator.baseURL + "/msi/token", "IDENTITY_HEADER": "mi-header"]),
                http: .shared
            )
            let token = try await credential.getToken(scope: cognitiveServicesScope)
            #expect(abs(token.expiresOn.timeIntervalSinceNow - 900) < 5)
            #expect(token.claims?.appID == "emulator-managed-identity")
        }
    }

    @Test func managedIdentityThroughIMDSRetriesWhileTheIdentityIsNotReady() async throws {
        try await Emulator.withRunning(emulatorConfiguration { $0.imdsTransientFailures = 2 }) { emulator in
            let credential = ManagedIdentityCredential(
                source: .imds(host: emulator.baseURL), clientID: nil, http: .shared, retryDelay: 0.05
            )
            _ = try await credential.getToken(scope: cognitiveServicesScope)
            #expect(emulator.stats.tokenRequests["imds"] == 3)
            let other = ManagedIdentityCredential(source: .imds(host: emulator.baseURL), clientID: "someone-else", http: .shared, retryDelay: 0.05)
            await #expect(throws: AuthError.self) { _ = try await other.getToken(scope: cognitiveServicesScope) }
        }
    }

    @Test func managedIdentityIsUnavailableWhereNothingAnswers() async throws {
        let credential = ManagedIdentityCredential(
            environment: CredentialEnvironment(["AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"]), http: .shared, probeTimeout: .seconds(1)
        )
        do throws(AuthError) {
            _ = try await credential.getToken(scope: cognitiveServicesScope)
            Issue.record("expected unavailable")
        } catch {
            #expect(error.kind == .unavailable)
        }
    }
}
