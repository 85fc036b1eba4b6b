import AsyncHTTPClient
import FoundryTestSupport
import Foundation
import Testing
@testable import FoundryAuth
@testable import FoundryEmulator

/// The Azure CLI credential against a fake `az` on PATH.
@Suite struct AzureCLITests {
    /// A fake `az` in a new folder; `$FOLDER` in the script stands for that folder.
    func fakeAZ(_ script: String) throws -> String {
        let folder = NSTemporaryDirectory() + "fb-az-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/az"
        try ("#!/bin/sh\n" + script.replacingOccurrences(of: "$FOLDER", with: folder)).write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return folder
    }

    @Test func readsExpiresOnEpochAndNeverPassesTheTokenAsAnArgument() async throws {
        let folder = try fakeAZ(
            """
            echo "$@" > "$FOLDER/args"
            echo '{"accessToken": "cli-token", "expiresOn": "2000-01-01 00:00:00.000000", "expires_on": 1900000000, "tenant": "t", "tokenType": "Bearer"}'
            """
        )
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let credential = AzureCLICredential(environment: CredentialEnvironment(["PATH": folder]))
        let token = try await credential.getToken(scope: cognitiveServicesScope)
        #expect(token.token == "cli-token")
        #expect(token.expiresOn == Date(timeIntervalSince1970: 1_900_000_000))
        let arguments = try String(contentsOfFile: folder + "/args", encoding: .utf8)
        #expect(arguments.trimmingCharacters(in: .whitespacesAndNewlines) == "account get-access-token --resource https://cognitiveservices.azure.com --output json")
    }

    @Test func fallsBackToExpiresOnInLocalTime() async throws {
        let folder = try fakeAZ(#"echo '{"accessToken": "t", "expiresOn": "2030-06-01 12:00:00.000000"}'"#)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let token = try await AzureCLICredential(environment: CredentialEnvironment(["PATH": folder])).getToken(scope: cognitiveServicesScope)
        let parts = Calendar.current.dateComponents(in: .current, from: token.expiresOn)
        #expect(parts.year == 2030 && parts.hour == 12)
    }

    @Test func notSignedInSaysRunAzLogin() async throws {
        let folder = try fakeAZ("echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        do throws(AuthError) {
            _ = try await AzureCLICredential(environment: CredentialEnvironment(["PATH": folder])).getToken(scope: cognitiveServicesScope)
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("run az login"))
        }
    }

    @Test func aHangingCLITimesOut() async throws {
        let folder = try fakeAZ("sleep 30")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        await #expect(throws: AuthError.self) {
            _ = try await AzureCLICredential(environment: CredentialEnvironment(["PATH": folder]), timeout: 0.5).getToken(scope: cognitiveServicesScope)
        }
    }
}

@Suite struct DefaultChainTests {
    @Test func keepsTheFirstLinkThatAnswers() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            let chain = DefaultAzureCredential(environment: emulator.secretEnvironment, http: .shared)
            _ = try await chain.getToken(scope: cognitiveServicesScope)
            #expect(chain.name.hasPrefix("default -> client-secret"))
        }
    }

    @Test func saysWhyEachLinkDidNotAnswer() async throws {
        let chain = DefaultAzureCredential(
            environment: CredentialEnvironment(["PATH": "/nonexistent", "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"]), http: .shared
        )
        do throws(AuthError) {
            _ = try await chain.getToken(scope: cognitiveServicesScope)
            Issue.record("expected no credential")
        } catch {
            #expect(error.kind == .unavailable)
            for link in ["environment:", "workload-identity:", "managed-identity:", "azure-cli:"] {
                #expect(error.message.contains(link), "\(link) missing from \(error.message)")
            }
        }
    }

    @Test(arguments: [400, 403])
    func anIMDSWithoutAnIdentityPassesToTheAzureCLI(status: Int) async throws {
        // IMDS answers 400 "Identity not found" on a VM without an identity: the SDKs' chain
        // takes any IMDS failure as "not available here" and asks the Azure CLI next.
        let folder = try AzureCLITests().fakeAZ(#"echo '{"accessToken": "cli-token", "expires_on": 1900000000}'"#)
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.json(status: status, #"{"error":"invalid_request","error_description":"Identity not found"}"#))]
        }) { imds in
            let chain = DefaultAzureCredential(
                environment: CredentialEnvironment(["PATH": folder, "AZURE_POD_IDENTITY_AUTHORITY_HOST": imds.baseURL]), http: .shared
            )
            let token = try await chain.getToken(scope: cognitiveServicesScope)
            #expect(token.token == "cli-token")
            #expect(chain.name == "default -> azure-cli")
            #expect(imds.requests.count >= 1)
        }
    }

    @Test func aRejectedLinkStopsTheChainInsteadOfHidingTheMistake() async throws {
        try await Emulator.withRunning(emulatorConfiguration()) { emulator in
            var values = emulator.secretEnvironment.values
            values["AZURE_CLIENT_SECRET"] = "wrong"
            let chain = DefaultAzureCredential(environment: CredentialEnvironment(values), http: .shared)
            do throws(AuthError) {
                _ = try await chain.getToken(scope: cognitiveServicesScope)
                Issue.record("expected a rejection")
            } catch {
                #expect(error.aadsts == 7000215)
            }
        }
    }
}
