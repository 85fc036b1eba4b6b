import AsyncHTTPClient
import FoundryAuth
import FoundryEmulator
import Foundation
import Synchronization

/// Where a job's requests go: its URL endpoint, or an emulator started in this process
/// for `endpoint: emulator`, with a credential of the job's `auth:` kind made up for it.
///
/// Nothing made up here (secret, key, certificate) is printed or stored; temporary files
/// are removed by ``close()``. Opened and closed by ``ServiceSession``.
final class ServiceEndpoint: Sendable {
    let target: ServiceTarget
    let emulator: Emulator?
    let temporaryFiles: [String]

    init(target: ServiceTarget, emulator: Emulator?, temporaryFiles: [String]) {
        self.target = target
        self.emulator = emulator
        self.temporaryFiles = temporaryFiles
    }

    /// Opens `spec`'s endpoint: its URL with the process's credential, or an emulator of
    /// its own with a credential of the target's kind made up for it.
    static func open(_ spec: JobFile.Target, job: JobFile, http: HTTPClient, credentials: CredentialCache) async throws -> ServiceEndpoint {
        let environment = CredentialEnvironment()
        func resolve(_ base: String, _ environment: CredentialEnvironment) throws -> ServiceTarget {
            try ServiceTarget.resolve(spec: spec, job: job, baseURL: base, environment: environment, http: http, credentials: credentials)
        }
        if case .url(let base) = spec.endpoint {
            return ServiceEndpoint(target: try resolve(base, environment), emulator: nil, temporaryFiles: [])
        }
        let secret = UUID().uuidString
        var configuration = EmulatorConfiguration.demo(secret: secret)
        configuration.apply(spec.emulator)
        var files: [String] = []
        let tenant = EmulatorConfiguration.demoTenantID, client = EmulatorConfiguration.demoClientID
        var values: [String: String] = ["PATH": environment["PATH"] ?? ""]
        switch spec.auth {
        case .apiKey:
            configuration.apiKeys = [secret]
            values[spec.apiKeyEnv] = secret
        case .certificate:
            let certificate = try EmulatorCertificate.selfSigned()
            configuration.clients[0].certificatePEM = certificate.certificatePEM
            let path = Self.temporaryFile(certificate.combinedPEM)
            files.append(path)
            values.merge(["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_CLIENT_CERTIFICATE_PATH": path]) { $1 }
        case .managedIdentity:
            values["IDENTITY_HEADER"] = configuration.identityHeader
        case .azureCLI, .none:
            throw UsageError("\(job.path): auth: \(spec.auth.rawValue) cannot sign in to endpoint: emulator (it checks credentials as Azure does); use client-secret, certificate, managed-identity, workload-identity, api-key or default")
        default:
            values.merge(["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_CLIENT_SECRET": secret]) { $1 }
        }
        let emulator: Emulator
        do {
            emulator = try await Emulator.start(configuration)
        } catch {
            Self.remove(files)
            throw error
        }
        values["AZURE_AUTHORITY_HOST"] = emulator.baseURL
        if spec.auth == .managedIdentity { values["IDENTITY_ENDPOINT"] = emulator.baseURL + "/msi/token" }
        if spec.auth == .workloadIdentity {
            let path = Self.temporaryFile(emulator.federatedToken(clientID: client))
            files.append(path)
            values.merge(["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "AZURE_FEDERATED_TOKEN_FILE": path]) { $1 }
        }
        do {
            let target = try resolve(emulator.baseURL, CredentialEnvironment(values))
            return ServiceEndpoint(target: target, emulator: emulator, temporaryFiles: files)
        } catch {
            await emulator.stop()
            Self.remove(files)
            throw error
        }
    }

    /// Removes made-up credential files (a certificate's private key, a federated token).
    static func remove(_ files: [String]) {
        for file in files { try? FileManager.default.removeItem(atPath: file) }
    }

    static func temporaryFile(_ text: String) -> String {
        let path = NSTemporaryDirectory() + "foundry-batch-" + UUID().uuidString
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        return path
    }

    func close() async {
        await emulator?.stop()
        Self.remove(temporaryFiles)
    }
}

/// The token providers of one run, one per distinct credential: targets of the same kind,
/// tenant, client and authority share one provider, and so one token and one refresh.
///
/// Filled while the session opens its targets, before any worker runs.
final class CredentialCache: Sendable {
    private let providers = Mutex<[String: TokenProvider]>([:])

    func provider(kind: CredentialKind, environment: CredentialEnvironment, http: HTTPClient) throws(FatalCondition) -> TokenProvider {
        let names = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT"]
        let key = ([kind.rawValue, environment.authorityHost] + names.map { environment[$0] ?? "" }).joined(separator: "|")
        if let shared = providers.withLock({ $0[key] }) { return shared }
        do {
            let provider = TokenProvider(credential: try CredentialFactory.make(kind: kind, environment: environment, http: http))
            providers.withLock { $0[key] = provider }
            return provider
        } catch {
            throw FatalCondition("auth: \(kind.rawValue): \(error.description)")
        }
    }
}
