import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization

/// The Azure SDKs' default chain: environment (client secret, then certificate), workload
/// identity, managed identity, Azure CLI. The first link that answers is kept for the rest
/// of the run.
///
/// A link that is not set up is skipped; a link that is set up but refused (a wrong
/// secret) stops the chain, as in the Azure SDKs, so a mistake is not hidden by a later
/// link. When no link answers, the error says why each one did not.
public final class DefaultAzureCredential: TokenCredential, CustomStringConvertible {
    /// The links, in the Azure SDKs' order.
    enum Link: CaseIterable {
        case environment, workloadIdentity, managedIdentity, azureCLI
    }

    let environment: CredentialEnvironment
    let http: HTTPClient
    let managedIdentityProbeTimeout: TimeInterval
    let chosen = Mutex<(any TokenCredential)?>(nil)

    public var name: String {
        chosen.withLock { $0.map { "default -> \($0.name)" } } ?? "default"
    }

    public var description: String { name }

    public init(environment: CredentialEnvironment, http: HTTPClient, managedIdentityProbeTimeout: TimeInterval = 1) {
        self.environment = environment
        self.http = http
        self.managedIdentityProbeTimeout = managedIdentityProbeTimeout
    }

    func make(_ link: Link) throws(AuthError) -> any TokenCredential {
        switch link {
        case .environment:
            if environment["AZURE_CLIENT_SECRET"] != nil { return try ClientSecretCredential(environment: environment, http: http) }
            if environment["AZURE_CLIENT_CERTIFICATE_PATH"] != nil { return try ClientCertificateCredential(environment: environment, http: http) }
            throw AuthError(.unavailable, credential: "environment", "neither AZURE_CLIENT_SECRET nor AZURE_CLIENT_CERTIFICATE_PATH is set")
        case .workloadIdentity:
            return try WorkloadIdentityCredential(environment: environment, http: http)
        case .managedIdentity:
            return ManagedIdentityCredential(
                environment: environment, http: http, probeTimeout: .milliseconds(Int64(managedIdentityProbeTimeout * 1000))
            )
        case .azureCLI:
            return AzureCLICredential(environment: environment)
        }
    }

    /// Failures the Azure SDKs' chain takes as "not available here" beyond `.unavailable`:
    /// any failure of IMDS (no identity assigned answers 400; a host without IMDS times
    /// out or refuses), and any failure of the Azure CLI, the last link. A rejected secret
    /// or certificate, or an App Service endpoint's refusal, still stops the chain.
    static func passesOver(_ link: Link, _ credential: (any TokenCredential)?, _ error: AuthError) -> Bool {
        switch link {
        case .managedIdentity:
            if let identity = credential as? ManagedIdentityCredential, case .imds = identity.source { return true }
            return false
        case .azureCLI: return error.kind != .misconfigured
        case .environment, .workloadIdentity: return false
        }
    }

    public func getToken(scope: String) async throws(AuthError) -> AccessToken {
        if let kept = chosen.withLock({ $0 }) { return try await kept.getToken(scope: scope) }
        var reasons: [String] = []
        for link in Link.allCases {
            var made: (any TokenCredential)?
            do throws(AuthError) {
                let credential = try make(link)
                made = credential
                let token = try await credential.getToken(scope: scope)
                chosen.withLock { $0 = credential }
                return token
            } catch where error.kind == .unavailable || Self.passesOver(link, made, error) {
                reasons.append("- \(error.description)")
            }
        }
        throw AuthError(
            .unavailable, credential: "default",
            "no credential answered:\n" + reasons.joined(separator: "\n")
                + "\nSet up one of them, or name one with auth: in the job file."
        )
    }
}
