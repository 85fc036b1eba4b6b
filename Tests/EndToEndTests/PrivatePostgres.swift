import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL cluster of one test's own, on loopback, that the test may restart: the
/// shared test database cannot be restarted under the suites running beside it.
///
/// Made from the server binaries `.ci/postgres.sh` installs (Debian's
/// `/usr/lib/postgresql/*/bin`); as root, the server runs as the `postgres` user.
struct PrivatePostgres {
    let folder: String
    let port: Int
    let bin: String
    /// Whether the server takes TLS only, with a certificate for `localhost` from its own
    /// authority (``authority``).
    var tls = false

    /// The PEM file of the authority that signed a TLS server's certificate.
    var authority: String { folder + "/ca.crt" }

    /// The folder of `initdb` and `pg_ctl`, when the server is installed here.
    static let binaries: String? = {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap { Int($0) }
        guard let newest = versions.max() else { return nil }
        let bin = "\(root)/\(newest)/bin"
        return FileManager.default.isExecutableFile(atPath: bin + "/initdb") ? bin : nil
    }()

    /// The job file's `state:` for a schema of this cluster (trust sign-in: no password).
    func url(schema: String) -> String { "postgresql://postgres@127.0.0.1:\(port)/postgres?schema=\(schema)" }

    /// Makes and starts a cluster, runs `body` with it, and removes it whatever happens.
    static func withRunning(tls: Bool = false, _ body: (PrivatePostgres) async throws -> Void) async throws {
        let bin = try #require(binaries, "no PostgreSQL server binaries under /usr/lib/postgresql: run .ci/postgres.sh as root")
        let folder = NSTemporaryDirectory() + "foundry-batch-private-pg-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let server = PrivatePostgres(folder: folder, port: try freePort(), bin: bin, tls: tls)
        if tls { try await server.makeCertificates() }
        if getuid() == 0 { try await server.shell("chown -R postgres: '\(folder)' && chmod 700 '\(folder)'", asServerUser: false) }
        try await server.pg("initdb", "-D '\(folder)/data' --auth=trust --no-sync -U postgres")
        if tls {
            // TLS or nothing: a plain connection finds no pg_hba.conf line.
            try await server.shell("echo 'hostssl all all 127.0.0.1/32 trust' > '\(folder)/data/pg_hba.conf'")
        }
        try await server.start()
        do {
            try await body(server)
        } catch {
            _ = try? await server.pg("pg_ctl", "-D '\(folder)/data' -m immediate -w stop")
            throw error
        }
        try await server.pg("pg_ctl", "-D '\(folder)/data' -m immediate -w stop")
    }

    func start() async throws {
        try await pg("pg_ctl", "-D '\(folder)/data' -l '\(folder)/server.log' -w -o \"\(options)\" start")
    }

    /// Restarts the server as an operator would (`pg_ctl restart -m fast`): every session
    /// is ended with SQLSTATE 57P01, and new ones are refused until the server is back.
    func restart() async throws {
        try await pg("pg_ctl", "-D '\(folder)/data' -l '\(folder)/server.log' -m fast -w -o \"\(options)\" restart")
    }

    var options: String {
        "-c listen_addresses=127.0.0.1 -p \(port) -c unix_socket_directories='\(folder)' -c fsync=off"
            + (tls ? " -c ssl=on -c ssl_cert_file='\(folder)/server.crt' -c ssl_key_file='\(folder)/server.key'" : "")
    }

    /// An authority and a server certificate it signed, naming `localhost` only, made with openssl.
    func makeCertificates() async throws {
        let steps = [
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=foundry-batch-test-ca",
            "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
            "printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > server.ext",
            "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext",
            "chmod 600 server.key",
        ]
        try await shell("cd '\(folder)' && " + steps.joined(separator: " && ") + " 2>/dev/null", asServerUser: false)
    }

    /// Runs a server program; as root, as the `postgres` user (the server refuses to run as root).
    @discardableResult
    func pg(_ program: String, _ arguments: String) async throws -> String {
        try await shell("'\(bin)/\(program)' \(arguments)")
    }

    ///
    /// The descriptors above 2 are closed first: Foundation's `Process` learns that a child
    /// ended when every holder of a socket it passes down has closed it, and the server
    /// that `pg_ctl start` leaves running would hold it forever.
    @discardableResult
    func shell(_ command: String, asServerUser: Bool = true) async throws -> String {
        let closing = #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@""#
        let inner = getuid() == 0 && asServerUser ? ["/bin/su", "postgres", "-s", "/bin/sh", "-c", command] : ["/bin/sh", "-c", command]
        let (process, out, err) = try CLI.launch("/bin/bash", ["-c", closing, "bash"] + inner)
        let result = try await CLI.finish(process, out, err, timeout: 60)
        try #require(result.status == 0, "\(command): \(result.stderr)")
        return result.stdout
    }

    /// A loopback port nothing listens on now.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        try #require(bound == 0, "cannot bind a loopback port")
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
