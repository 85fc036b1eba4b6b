import Foundation

/// The Azure SDKs' environment variables, read from an injected dictionary so tests never
/// depend on (or leak into) the real process environment.
public struct CredentialEnvironment: Sendable {
    public var values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    public subscript(_ name: String) -> String? {
        guard let value = values[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else { return nil }
        return value
    }

    /// `AZURE_AUTHORITY_HOST`, default the public cloud, without a trailing slash.
    public var authorityHost: String {
        var host = self["AZURE_AUTHORITY_HOST"] ?? "https://login.microsoftonline.com"
        if !host.contains("://") { host = "https://" + host }
        while host.hasSuffix("/") { host.removeLast() }
        return host
    }

    /// The values of `names`, or `.unavailable` for `credential` naming the missing ones.
    public func require(_ names: [String], for credential: String) throws(AuthError) -> [String] {
        let missing = names.filter { self[$0] == nil }
        guard missing.isEmpty else {
            throw AuthError(.unavailable, credential: credential, "set \(missing.joined(separator: ", ")) in the environment")
        }
        return names.map { self[$0] ?? "" }
    }

    /// Values that must never appear in output: secrets from the environment.
    public var secrets: [String] {
        ["AZURE_CLIENT_SECRET", "AZURE_OPENAI_API_KEY", "IDENTITY_HEADER", "AZURE_CLIENT_CERTIFICATE_PASSWORD"].compactMap { self[$0] }
    }
}
