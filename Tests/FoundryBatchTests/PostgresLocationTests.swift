import Foundation
import FoundryTestSupport
import Testing
@testable import FoundryBatch

/// Reading `state: postgresql://...`: what it takes, what it refuses, and that a password
/// typed into it never comes back in a message.
struct PostgresLocationTests {
    let environment = ["USER": "someone", "HOME": "/nonexistent"]

    func location(_ url: String) throws(UsageError) -> PostgresLocation {
        try PostgresLocation(url: url, jobName: "Nightly Eval", environment: environment)
    }

    func refusal(_ url: String) -> String {
        do {
            _ = try location(url)
            return ""
        } catch {
            return error.description
        }
    }

    @Test func aURLGivesUserHostPortDatabaseAndTheJobsOwnSchema() throws {
        let plain = try location("postgresql://batch@db.example.com:6543/evals")
        #expect(plain.user == "batch" && plain.host == "db.example.com" && plain.port == 6543 && plain.database == "evals")
        #expect(plain.schema == "foundry_batch_nightly_eval" && plain.sslMode == .prefer)
        let short = try location("postgres://db.example.com")
        #expect(short.user == "someone" && short.port == 5432 && short.database == "someone")
        #expect(try location("postgresql://@db.example.com/d").user == "someone", "an empty user is no user, as in libpq")
        let options = try location("postgresql://u@[::1]:5432/d?schema=team_a&sslmode=verify-full")
        #expect(options.host == "::1" && options.schema == "team_a" && options.sslMode == .verifyFull)
        #expect(options.display == "postgresql://u@[::1]:5432/d?schema=team_a")
    }

    @Test func theSchemeIsReadInAnyCaseAndAroundSpaces() throws {
        #expect(try location("Postgresql://u@h/d").host == "h")
        #expect(try location("  POSTGRES://u@h/d ").host == "h")
    }

    @Test func aMistypedOrForeignURLIsRefusedNotTakenForAFileAndItsPasswordNeverShown() {
        for url in ["postgresql:/u:hunter2@h/d", "postgresql:u:hunter2@h/d", "mysql://u:hunter2@h/d", "Postgres:/u:hunter2@h"] {
            #expect(PostgresLocation.isURL(url), "\(url) is meant as a URL")
            let message = refusal(url)
            #expect(message.contains("is not a PostgreSQL URL"), "\(url): \(message)")
            #expect(!message.contains("hunter2"), "\(url): \(message)")
        }
        for path in ["state.sqlite", ".foundry-batch/job.sqlite", "postgres-state.sqlite", "/var/lib/postgres/x.sqlite"] {
            #expect(!PostgresLocation.isURL(path), "\(path) is a file")
        }
    }

    @Test func aPasswordInTheURLIsRefusedWithTheFix() {
        let message = refusal("postgresql://u:hunter2@h/d")
        #expect(message.contains("holds a password") && message.contains("PGPASSWORD") && !message.contains("hunter2"))
        for url in ["postgresql://u@h/d?password=hunter2", "postgresql://u@h/d?schema=s&Password=hunter2", "postgresql://u@h/d?pass%77ord=hunter2"] {
            let message = refusal(url)
            #expect(message.contains("holds a password") && message.contains("PGPASSWORD"), "\(url): \(message)")
            #expect(!message.contains("hunter2") && message.contains("postgresql://u@h/d"), "\(url): \(message)")
        }
        // A URL too mistyped to read still does not show the password it holds as an option.
        #expect(!refusal("postgresql:/u@h/d?password=hunter2&schema=s").contains("hunter2"))
    }

    @Test func whatThisVersionCannotUseIsRefusedWithWhatToWrite() {
        #expect(refusal("postgresql://u@h:99999/d").contains("not a TCP port"))
        #expect(refusal("postgresql://u@h:0/d").contains("not a TCP port"))
        #expect(refusal("postgresql://u@h1,h2/d").contains("several hosts"))
        #expect(refusal("postgresql://u@h/d?schema=a&schema=b").contains("twice"))
        #expect(refusal("postgresql://u@h/d?schema=public").contains("PostgreSQL's own"))
        #expect(refusal("postgresql://u@h/d?schema=pg_temp").contains("PostgreSQL's own"))
        #expect(refusal("postgresql://u@h/d?schema=Bad-Name").contains("plain name"))
        #expect(refusal("postgresql://u@h/d?sslmode=allow").contains("is not one of"))
        #expect(refusal("postgresql://u@h/d?target_session_attrs=any").contains("not known"))
    }

    @Test func thePasswordComesFromThePasswordFileAsLibpqReadsIt() throws {
        let folder = TemporaryDirectory()
        let file = folder.write("pgpass", "# comment\nother:5432:*:u:wrong\nh:5432:d:u:pa\\:ss\\\\word\n")
        chmod(file, 0o600)
        let here = try location("postgresql://u@h/d")
        #expect(try here.password(environment: ["PGPASSFILE": file]) == "pa:ss\\word")
        #expect(try here.password(environment: ["PGPASSFILE": file, "PGPASSWORD": "from-env"]) == "from-env")
        chmod(file, 0o644)
        #expect(throws: UsageError.self) { try here.password(environment: ["PGPASSFILE": file]) }
    }
}
