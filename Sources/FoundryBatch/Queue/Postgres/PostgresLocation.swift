import Foundation

/// Where a job's queue lives in PostgreSQL, from `state: postgresql://user@host:port/db?schema=...&sslmode=...`.
///
/// The URL never holds the password: a job file is shared and committed, so a password in
/// it is refused with the fix. The password comes from `PGPASSWORD`, or from the password
/// file (`PGPASSFILE`, else `~/.pgpass`) as libpq reads it; a server that trusts the client
/// needs none.
public struct PostgresLocation: Sendable, Equatable {
    /// How the connection is protected, as libpq's `sslmode` names it.
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, without checking its certificate (libpq's default).
        case prefer
        /// TLS or no connection, without checking the certificate.
        case require
        /// TLS with the certificate checked against the system's roots (and, for
        /// `verify-full`, the host name).
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var user: String
    public var host: String
    public var port: Int
    public var database: String
    /// The job's own schema: `?schema=`, else `foundry_batch_<job name>`.
    public var schema: String
    public var sslMode: SSLMode

    /// Whether a `state:` value is meant as a database URL rather than a SQLite file.
    ///
    /// Loosely: any `scheme://`, and `postgres…:` in any case, so that `Postgresql://` or
    /// `postgresql:/host` is refused with the fix (``init(url:jobName:environment:)``) rather
    /// than taken for a file name, with the password in it becoming a folder.
    public static func isURL(_ text: String) -> Bool {
        let text = text.trimmingCharacters(in: .whitespaces).lowercased()
        return text.contains("://") || (text.hasPrefix("postgres") && text.contains(":"))
    }

    /// The URL as messages show it: everything but a password, which it never holds.
    public var display: String {
        "postgresql://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)?schema=\(schema)"
    }

    /// Reads `url`; `jobName` gives the default schema.
    ///
    /// - Throws: ``UsageError`` (exit 2) for a URL that is not one, holds a password, or names
    ///   an option or schema this version does not take, with what to write instead.
    public init(url: String, jobName: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(UsageError) {
        let url = url.trimmingCharacters(in: .whitespaces)
        guard Self.isURL(url), let parts = URLComponents(string: url), let scheme = parts.scheme?.lowercased(),
            scheme == "postgresql" || scheme == "postgres", url.dropFirst(scheme.count).hasPrefix("://"),
            let host = parts.host, !host.isEmpty
        else {
            throw UsageError("state: '\(Self.redacted(url))' is not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DATABASE")
        }
        // libpq also reads `?password=`: refused the same way, for the same reason.
        if parts.password != nil || (parts.queryItems ?? []).contains(where: { Self.isPasswordOption($0.name) }) {
            throw UsageError(
                "state: the PostgreSQL URL holds a password, which a job file or a command line must not hold (others may read them); write \(Self.redacted(url)) "
                    + "and give the password in PGPASSWORD or a ~/.pgpass line (HOST:PORT:DATABASE:USER:PASSWORD, mode 0600)"
            )
        }
        if host.contains(",") {
            throw UsageError("state: the PostgreSQL URL names several hosts, which this version does not try in turn; name one (a failover address or a proxy in front of them)")
        }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        // An empty user (`postgresql://@host`) is no user, as in libpq: the environment's is used.
        let nonEmpty = { (text: String?) in text.flatMap { $0.isEmpty ? nil : $0 } }
        user = nonEmpty(parts.user?.removingPercentEncoding) ?? nonEmpty(environment["PGUSER"]) ?? nonEmpty(environment["USER"]) ?? "postgres"
        port = parts.port ?? Int(environment["PGPORT"] ?? "") ?? 5432
        guard (1...65535).contains(port) else {
            throw UsageError("state: port \(port) of the PostgreSQL URL is not a TCP port (1 to 65535)")
        }
        let path = parts.path.hasPrefix("/") ? String(parts.path.dropFirst()) : parts.path
        database = path.removingPercentEncoding.flatMap { $0.isEmpty ? nil : $0 } ?? environment["PGDATABASE"] ?? user
        var schema = Self.defaultSchema(jobName: jobName)
        var mode = SSLMode.prefer
        var seen: Set<String> = []
        for item in parts.queryItems ?? [] {
            guard seen.insert(item.name).inserted else {
                throw UsageError("state: the PostgreSQL URL gives \(item.name)= twice; give it once")
            }
            switch item.name {
            case "schema":
                guard let value = item.value, Self.isSchemaName(value) else {
                    throw UsageError("state: schema '\(item.value ?? "")' must be a plain name: a lowercase letter or _, then letters, digits or _ (at most 63)")
                }
                guard value != "public", value != "information_schema", !value.hasPrefix("pg_") else {
                    throw UsageError("state: schema '\(value)' is PostgreSQL's own; give the job a schema of its own (?schema=NAME), which the queue creates")
                }
                schema = value
            case "sslmode":
                guard let value = item.value, let parsed = SSLMode(rawValue: value) else {
                    throw UsageError("state: sslmode '\(item.value ?? "")' is not one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                mode = parsed
            default:
                throw UsageError("state: the PostgreSQL URL option '\(item.name)' is not known; this version takes schema= and sslmode=")
            }
        }
        self.schema = schema
        sslMode = mode
    }

    /// The URL without whatever stood between `user:` and `@`, however mistyped its scheme,
    /// and without a `password=` option.
    static func redacted(_ url: String) -> String {
        guard let question = url.firstIndex(of: "?") else { return redactedCredentials(url) }
        let options = url[url.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false)
            .filter { !isPasswordOption(String($0.prefix { $0 != "=" })) }
        return redactedCredentials(String(url[..<question])) + (options.isEmpty ? "" : "?" + options.joined(separator: "&"))
    }

    /// Whether an option's name, as written (`Password`, `pass%77ord`), is `password`.
    static func isPasswordOption(_ name: String) -> Bool {
        (name.removingPercentEncoding ?? name).lowercased() == "password"
    }

    private static func redactedCredentials(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@") else { return url }
        let before = url[..<at]
        // The credentials start after the scheme's `//`, or after its `:` when the slashes are missing.
        let start = before.range(of: "://")?.upperBound ?? before.firstIndex(of: ":").map { before.index(after: $0) } ?? before.startIndex
        guard let colon = before[start...].firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + String(url[at...])
    }

    static func isSchemaName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, text.unicodeScalars.count <= 63, first == "_" || ("a"..."z").contains(first) else { return false }
        return text.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
    }

    /// `foundry_batch_` and the job's name in lowercase, other characters as `_`.
    static func defaultSchema(jobName: String) -> String {
        let name = String(jobName.lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" })
        return String(("foundry_batch_" + name).prefix(63))
    }

    /// The password for this location: `PGPASSWORD`, else the first matching line of the
    /// password file; nil when neither has one (a server that trusts the client).
    ///
    /// - Throws: ``UsageError`` for a password file others may read (libpq ignores such a
    ///   file; saying so beats a puzzling sign-in failure).
    public func password(environment: [String: String] = ProcessInfo.processInfo.environment) throws(UsageError) -> String? {
        if let password = environment["PGPASSWORD"], !password.isEmpty { return password }
        let file = environment["PGPASSFILE"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.pgpass")
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file),
            let text = try? String(contentsOfFile: file, encoding: .utf8)
        else { return nil }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw UsageError("\(file): the password file may be read by others; make it private with chmod 600 \(file)")
        }
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            let fields = Self.passwordFields(line)
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0.0 == "*" || $0.0 == $0.1 }) {
                return fields[4]
            }
        }
        return nil
    }

    /// A password file line's fields: `:` separates, `\:` and `\\` stand for themselves.
    static func passwordFields(_ line: Substring) -> [String] {
        var fields: [String] = [], current = "", escaped = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == ":" && fields.count < 4 {
                fields.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        return fields + [current]
    }
}
