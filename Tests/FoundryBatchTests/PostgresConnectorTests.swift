import Foundation
import Logging
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// What the connector makes of the files `sslmode` reads, and of a server that says nothing.
struct PostgresConnectorTests {
    func refusal(rootCertificate contents: String?, mode: String = "verify-full") throws -> String {
        let directory = TemporaryDirectory()
        var environment = ["HOME": directory.path, "USER": "someone"]
        if let contents { environment["PGSSLROOTCERT"] = directory.write("root.crt", contents) }
        let location = try PostgresLocation(url: "postgresql://u@db.example.com/d?sslmode=\(mode)", jobName: "tls", environment: environment)
        do {
            _ = try PostgresConnector.tlsContext(location, environment: environment)
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func aRootCertificateFileThatHoldsNoCertificateIsSaidInWords() throws {
        let message = try refusal(rootCertificate: "not a certificate\n")
        #expect(message.contains("holds no PEM certificate") && message.contains("root.crt"), "\(message)")
        #expect(!message.contains("failedToLoadCertificate") && !message.contains("NIOSSL"), "no type name of the TLS library: \(message)")
    }

    @Test func aModeThatChecksNoCertificateReadsNoFile() throws {
        #expect(try refusal(rootCertificate: "not a certificate\n", mode: "require").isEmpty)
    }

    /// Waits the connector's 10 s for the TLS answer: it is the wait under test.
    @Test(.timeLimit(.minutes(1))) func aServerThatTakesTheConnectionAndSaysNothingIsSaidNotToAnswer() async throws {
        let server = try await SilentServer.start()
        let environment = ["HOME": TemporaryDirectory().path, "USER": "someone"]
        let location = try PostgresLocation(url: "postgresql://u@127.0.0.1:\(server.port)/d", jobName: "silent", environment: environment)
        let connector = try PostgresConnector(location: location, password: nil, logger: Logger(label: "test"), environment: environment)
        var message = ""
        do {
            _ = try await connector.connect(id: 1)
        } catch let error as PostgresConnector.Unreachable {
            message = error.description
        }
        await server.stop()
        #expect(message.contains("did not answer the TLS request within 10 s"), "\(message)")
    }
}
