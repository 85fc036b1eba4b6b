import AsyncHTTPClient
import Foundation
import FoundryTestSupport
import Synchronization
@testable import FoundryAuth
@testable import FoundryEmulator

let testSecret = "s3cr3t-value-never-printed"

extension Emulator {
    /// The environment a client-secret user would export, pointed at this emulator.
    var secretEnvironment: CredentialEnvironment {
        CredentialEnvironment([
            "AZURE_TENANT_ID": EmulatorConfiguration.demoTenantID, "AZURE_CLIENT_ID": EmulatorConfiguration.demoClientID,
            "AZURE_CLIENT_SECRET": testSecret, "AZURE_AUTHORITY_HOST": baseURL, "PATH": "/nonexistent",
        ])
    }

    func secretCredential(secret: String = testSecret, clientID: String = EmulatorConfiguration.demoClientID, tenant: String = EmulatorConfiguration.demoTenantID) -> ClientSecretCredential {
        ClientSecretCredential(tenantID: tenant, clientID: clientID, secret: secret, authorityHost: baseURL, http: .shared)
    }
}

func emulatorConfiguration(_ change: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorConfiguration {
    EmulatorConfiguration.forTests(secret: testSecret, change)
}

/// A credential whose answers a test scripts, with a clock the test moves.
final class ScriptedCredential: TokenCredential {
    struct State {
        var calls = 0
        var failing = false
        var lifetime: TimeInterval = 100
        var delay: Duration = .milliseconds(20)
    }

    let state = Mutex(State())
    let clock: TestClock
    var name: String { "scripted" }

    init(clock: TestClock) { self.clock = clock }

    var calls: Int { state.withLock { $0.calls } }

    func getToken(scope: String) async throws(AuthError) -> AccessToken {
        let (call, failing, lifetime, delay) = state.withLock { s -> (Int, Bool, TimeInterval, Duration) in
            s.calls += 1
            return (s.calls, s.failing, s.lifetime, s.delay)
        }
        try? await Task.sleep(for: delay)
        if failing { throw AuthError(.network, credential: name, "scripted failure") }
        return AccessToken(token: "token-\(call)", expiresOn: clock.now().addingTimeInterval(lifetime))
    }
}

/// A clock a test moves by hand.
final class TestClock: Sendable {
    let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    func now() -> Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}
