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

extension TransportSecurity {
    /// Whether `value` can travel in an HTTP header as it is: visible ASCII, no space,
    /// no line break. A key or token with anything else would be refused by the HTTP
    /// client, whose error quotes the value, or would inject a header.
    public static func isHeaderSafe(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// The origin (`scheme://host[:port]`) of a redirect's `Location`, for messages: never
    /// its path or query, which may carry codes or signatures, and never decoded: a
    /// percent-encoded escape sequence in the host stays encoded.
    public static func origin(ofLocation location: String?) -> String {
        guard let location, let components = URLComponents(string: location), let host = components.percentEncodedHost, !host.isEmpty else {
            return location == nil ? "no Location" : "a relative Location on the same server"
        }
        var origin = "\(components.scheme ?? "?")://\(host)"
        if let port = components.port { origin += ":\(port)" }
        return ServiceText.printable(origin, limit: 200)
    }

    /// What to say about a 3xx answer: redirects are never followed, because the request
    /// carries a credential (an `api-key`, a bearer token, or a client secret in the body)
    /// that must not reach another server.
    public static func redirectRefusal(status: Int, location: String?, what: String) -> String {
        "\(what) answered HTTP \(status), a redirect to \(origin(ofLocation: location)); redirects are not followed, since the request carries a credential. Point the job at the final address instead."
    }
}
