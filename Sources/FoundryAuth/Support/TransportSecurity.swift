import Foundation

/// The one rule for where a secret may travel: over https, or over http to this machine only.
public enum TransportSecurity {
    /// Whether `host` is this machine (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".")
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// Whether a secret may be sent to `url`: https anywhere, http only to loopback.
    public static func maySendSecret(to url: URL) -> Bool {
        switch url.scheme?.lowercased() {
        case "https": true
        case "http": url.host.map(isLoopback) ?? false
        default: false
        }
    }
}
