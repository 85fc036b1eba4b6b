import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// What the connector makes of the files `sslmode` reads, before any connection.
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
}
