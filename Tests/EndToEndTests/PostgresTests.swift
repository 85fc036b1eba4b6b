import FoundryEmulator
import Foundation
import FoundryTestSupport
import Testing

/// Runners sharing one PostgreSQL job, through the built binary: every row exactly once
/// whatever dies, and the rows of a runner on another host come back when its leases expire.
///
/// Enabled when `FOUNDRY_BATCH_TEST_POSTGRES` names a database (`.ci/postgres.sh`); CI sets
/// `FOUNDRY_BATCH_REQUIRE_POSTGRES`, so there a missing database fails instead of skipping.
@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: PostgresJob.url != nil || PostgresJob.required))
struct PostgresTests {
    static let key = "e2e-postgres-key-never-printed"

    func cli(_ emulator: Emulator, rows: Int) throws -> (CLI, String) {
        let url = try #require(PostgresJob.url, "FOUNDRY_BATCH_TEST_POSTGRES is not set: run eval \"$(.ci/postgres.sh)\" as root")
        let schema = "e2e_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let environment = ["AZURE_OPENAI_API_KEY": Self.key, "PGPASSWORD": ProcessInfo.processInfo.environment["PGPASSWORD"] ?? ""]
        let cli = CLI(environment: environment)
        cli.write(
            "job.yaml",
            """
            name: e2e
            input: in.jsonl
            endpoint: \(emulator.baseURL)
            deployment: gpt-5-mini
            auth: api-key
            state: \(url)?schema=\(schema)
            limits: {concurrency: 8, timeout: 10}
            """
        )
        cli.write("in.jsonl", (1...rows).map { "{\"id\": \"r\($0)\", \"prompt\": \"Prompt \($0)\"}" }.joined(separator: "\n") + "\n")
        return (cli, schema)
    }

    @Test func twoRunnersAndAKillNineLeaveEveryRowExactlyOnce() async throws {
        let configuration = EmulatorConfiguration.forTests(secret: "e2e-pg-secret", apiKeys: [Self.key]) {
            $0.latencyMs = 20
            $0.latencyJitterMs = 20
        }
        try await Emulator.withRunning(configuration) { emulator in
            let (cli, _) = try cli(emulator, rows: 800)
            #expect(try await cli.run("load", "job.yaml").status == 0)
            let (victim, victimOut, victimErr) = try cli.start(["run", "job.yaml", "--no-progress"])
            let (partner, partnerOut, partnerErr) = try cli.start(["run", "job.yaml", "--no-progress"])
            try await Task.sleep(for: .milliseconds(600))
            #expect(victim.isRunning, "the kill lands mid-run")
            kill(victim.processIdentifier, SIGKILL)
            _ = try await CLI.finish(victim, victimOut, victimErr)
            #expect(victim.terminationReason == .uncaughtSignal)
            let survivor = try await CLI.finish(partner, partnerOut, partnerErr)
            #expect(survivor.status == 0, "\(survivor.stderr)")
            let final = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(final.status == 0, "\(final.stderr)")
            let status = try await cli.run("status", "job.yaml", "--json").json
            #expect(status["succeeded"] as? Int == 800 && status["pending"] as? Int == 0 && status["running"] as? Int == 0)
            let ids = cli.lines("out/e2e.jsonl").compactMap { $0["custom_id"] as? String }
            #expect(ids.count == 800 && Set(ids).count == 800, "every row once in the results")
            #expect(emulator.stats.repeatedAnswers <= 8, "at most the killed runner's in-flight rows went twice: \(emulator.stats.repeatedAnswers)")
            #expect(!cli.read("out/e2e.jsonl").contains(Self.key))
        }
    }

    @Test func aRunnerOnAnotherHostThatDiedGivesItsRowsBackWhenItsLeasesExpire() async throws {
        try await Emulator.withRunning(EmulatorConfiguration.forTests(secret: "e2e-pg-secret", apiKeys: [Self.key])) { emulator in
            let (cli, schema) = try cli(emulator, rows: 40)
            #expect(try await cli.run("load", "job.yaml").status == 0)
            // Ten rows held by a runner of another host that is gone: no pid can be checked there.
            let expiry = Date().timeIntervalSince1970 + 2
            try await PostgresJob.psql(
                "UPDATE \(schema).rows SET state = 'running', lease_owner = 'elsewhere.example/4242/deadbeef/0123456789ab', lease_expires_at = \(expiry) WHERE seq <= 10"
            )
            let run = try await cli.run("run", "job.yaml", "--no-progress", "--json")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.json["succeeded"] as? Int == 40, "the other host's rows came back after its leases expired")
            #expect(Date().timeIntervalSince1970 >= expiry, "not before")
            #expect(emulator.stats.requests == 40)
        }
    }

    @Test func aCopiedStateRunsOnWithoutSendingAnythingAgain() async throws {
        try await Emulator.withRunning(EmulatorConfiguration.forTests(secret: "e2e-pg-secret", apiKeys: [Self.key])) { emulator in
            let (cli, schema) = try cli(emulator, rows: 40)
            let postgres = cli.read("job.yaml")
            let url = try #require(postgres.split(separator: "\n").first { $0.hasPrefix("state: ") }).dropFirst(7)
            cli.write("job.yaml", postgres.replacingOccurrences(of: "state: \(url)", with: "state: state.sqlite"))
            cli.write("in.jsonl", cli.read("in.jsonl").replacingOccurrences(of: "Prompt 7\"", with: "BLOCKME\""))
            #expect(try await cli.run("run", "job.yaml", "--no-progress").status == 1, "one row refused by the filter")
            let before = try await cli.run("status", "job.yaml", "--json").json
            let sent = emulator.stats.requests

            let copy = try await cli.run("state", "copy", "job.yaml", "--to", String(url))
            #expect(copy.status == 0, "\(copy.stderr)")
            #expect(copy.stdout.contains("moved 40 rows (1 attempts, 1 loads, 0 batches)"), "\(copy.stdout)")
            let again = try await cli.run("state", "copy", "job.yaml", "--to", String(url))
            #expect(again.status == 2 && again.stderr.contains("already holds 40 rows"), "\(again.stderr)")

            cli.write("job.yaml", postgres)
            let after = try await cli.run("status", "job.yaml", "--json").json
            for key in ["total", "succeeded", "failed", "prompt_tokens", "completion_tokens", "attempts"] {
                #expect("\(after[key] ?? "-")" == "\(before[key] ?? "-")", "\(key) in \(schema)")
            }
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 1)
            #expect(emulator.stats.requests == sent, "nothing was sent again")
            #expect(cli.lines("out/e2e.jsonl").count == 39 && cli.lines("out/e2e.errors.jsonl").count == 1)
            _ = try await cli.run("load", "job.yaml")
            #expect(try await cli.run("status", "job.yaml", "--json").json["total"] as? Int == 40, "a reload after the copy adds nothing")
        }
    }

    @Test func aDatabaseThatStaysAwayStopsTheRunWithExitThree() async throws {
        try await Emulator.withRunning(EmulatorConfiguration.forTests(secret: "e2e-pg-secret", apiKeys: [Self.key])) { emulator in
            let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": Self.key, "FOUNDRY_BATCH_STATE_PATIENCE": "1", "PGPASSWORD": "unused"])
            cli.write(
                "job.yaml",
                "name: e2e\ninput: in.jsonl\nendpoint: \(emulator.baseURL)\ndeployment: gpt-5-mini\nauth: api-key\nstate: postgresql://nobody@127.0.0.1:9/none\n"
            )
            cli.write("in.jsonl", "{\"id\": \"r1\", \"prompt\": \"p\"}\n")
            let run = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(run.status == 3)
            #expect(run.stderr.contains("the state database is out of reach"), "\(run.stderr)")
            #expect(!run.stderr.contains("unused"), "the password is never printed")
            #expect(emulator.stats.requests == 0)

            cli.write("job.yaml", cli.read("job.yaml").replacingOccurrences(of: "nobody@", with: "nobody:secret@"))
            let refused = try await cli.run("run", "job.yaml", "--no-progress")
            #expect(refused.status == 2 && refused.stderr.contains("holds a password") && !refused.stderr.contains("secret@"))
        }
    }

    /// A job whose state goes through a proxy in front of the test database, which a test
    /// takes away mid-run as a lost network would.
    func jobBehind(_ proxy: CuttingProxy, _ emulator: Emulator, patience: Int) throws -> CLI {
        let url = try #require(PostgresJob.url, "FOUNDRY_BATCH_TEST_POSTGRES is not set")
        var parts = try #require(URLComponents(string: url))
        parts.host = "127.0.0.1"
        parts.port = proxy.port
        let environment = [
            "AZURE_OPENAI_API_KEY": Self.key, "FOUNDRY_BATCH_STATE_PATIENCE": "\(patience)",
            "PGPASSWORD": ProcessInfo.processInfo.environment["PGPASSWORD"] ?? "",
        ]
        let cli = CLI(environment: environment)
        let schema = "e2e_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        cli.write(
            "job.yaml",
            "name: e2e\ninput: in.jsonl\nendpoint: \(emulator.baseURL)\ndeployment: gpt-5-mini\nauth: api-key\n"
                + "state: \(try #require(parts.string))?schema=\(schema)\nlimits: {concurrency: 8, timeout: 10}\n"
        )
        cli.write("in.jsonl", (1...3000).map { "{\"id\": \"r\($0)\", \"prompt\": \"Prompt \($0)\"}" }.joined(separator: "\n") + "\n")
        return cli
    }

    /// A proxy in front of the test database that passes everything until stopped.
    func databaseProxy() async throws -> CuttingProxy {
        let url = try #require(PostgresJob.url.flatMap(URLComponents.init(string:)), "FOUNDRY_BATCH_TEST_POSTGRES is not set")
        return try await CuttingProxy.start(to: url.host ?? "127.0.0.1", port: url.port ?? 5432, cutAfter: .max)
    }

    /// Runs a job whose database a proxy takes away once 40 answers came, lets `then` act on
    /// the run, and returns how it ended, with its `--json` summary.
    ///
    /// - Parameter losing: how the database goes away (by default the proxy closes every connection).
    func runLosingItsDatabase(
        patience: Int, timeout: TimeInterval, losing: (CuttingProxy) async -> Void = { await $0.stop() },
        then: (Process) async throws -> Void = { _ in }
    ) async throws -> (CLI.Result, [String: Any]) {
        let configuration = EmulatorConfiguration.forTests(secret: "e2e-pg-secret", apiKeys: [Self.key]) { $0.latencyMs = 100 }
        return try await Emulator.withRunning(configuration) { emulator in
            let proxy = try await databaseProxy()
            let cli = try jobBehind(proxy, emulator, patience: patience)
            let (run, out, err) = try cli.start(["run", "job.yaml", "--no-progress", "--json"])
            while emulator.stats.requests < 40, run.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            #expect(run.isRunning, "the database goes away mid-run")
            await losing(proxy)
            try await then(run)
            let result = try await CLI.finish(run, out, err, timeout: timeout)
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
            return (result, summary)
        }
    }

    @Test func aDatabaseLostMidRunStopsItAfterThePatienceWithWhatItSent() async throws {
        // Every step winding the run down shares one outage: it ends after about the
        // patience, not after a patience per step (a bound far above it, not a timing).
        let (result, summary) = try await runLosingItsDatabase(patience: 3, timeout: 45)
        #expect(result.status == 3, "\(result.stderr)")
        #expect(summary["exit_code"] as? Int == 3 && (summary["error"] as? String ?? "").contains("out of reach"))
        #expect((summary["requests"] as? Int ?? 0) >= 40, "the run's own figures survive the lost database: \(summary)")
        #expect(summary["pending"] is NSNull && summary["total"] is NSNull, "counts it could not read are null, not zeros: \(summary)")
    }

    @Test func aSigtermWhileTheDatabaseIsAwayEndsTheRunAtOnceWithExit130() async throws {
        // The patience is 10 minutes: only the interrupt can end the run within the bound.
        let (result, summary) = try await runLosingItsDatabase(patience: 600, timeout: 60, then: { run in
            // The proxy is closed: every step of the run from here finds the database away.
            kill(run.processIdentifier, SIGTERM)
        })
        #expect(result.status == 130, "\(result.stderr)")
        #expect(summary["exit_code"] as? Int == 130 && (summary["requests"] as? Int ?? 0) >= 40, "\(summary)")
        #expect(result.stderr.contains("interrupted while the state database was out of reach"), "\(result.stderr)")
        let error = summary["error"] as? String ?? ""
        #expect(error.contains("return when their leases expire") && !error.contains("were released"), "the rows could not be released: \(error)")
    }

    @Test func aSigtermWhileTheDatabaseHangsEndsTheRunWithExit130() async throws {
        // A stalled database answers nothing and closes nothing: each statement waiting on it
        // would wait its whole answer timeout (10 minutes here) but for the interrupt.
        let (result, summary) = try await runLosingItsDatabase(
            patience: 600, timeout: 60, losing: { proxy in proxy.stall() }, then: { run in kill(run.processIdentifier, SIGTERM) }
        )
        #expect(result.status == 130, "\(result.stderr)")
        #expect(summary["exit_code"] as? Int == 130 && (summary["requests"] as? Int ?? 0) >= 40, "\(summary)")
    }
}

/// The test database of the end-to-end suite.
enum PostgresJob {
    static let url = ProcessInfo.processInfo.environment["FOUNDRY_BATCH_TEST_POSTGRES"]
    static let required = ProcessInfo.processInfo.environment["FOUNDRY_BATCH_REQUIRE_POSTGRES"] != nil

    /// Runs one statement with `psql` against the test database.
    static func psql(_ sql: String) async throws {
        let url = try #require(url)
        let (process, out, err) = try CLI.launch("/usr/bin/psql", [url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        let result = try await CLI.finish(process, out, err, timeout: 30)
        #expect(result.status == 0, "psql: \(sql): \(result.stderr)")
    }
}

/// A database restarted under a run, on a cluster of the test's own (restarting the shared
/// test database would cut the suites running beside this one).
@Suite(.timeLimit(.minutes(3)), .enabled(if: PrivatePostgres.binaries != nil || PostgresJob.required))
struct PostgresRestartTests {
    @Test func aDatabaseRestartedMidRunLeavesTheRunCompleteWithEveryRowOnce() async throws {
        let configuration = EmulatorConfiguration.forTests(secret: "e2e-pg-secret", apiKeys: [PostgresTests.key]) {
            $0.latencyMs = 20
            $0.latencyJitterMs = 10
        }
        try await Emulator.withRunning(configuration) { emulator in
            try await PrivatePostgres.withRunning { server in
                let rows = 1500
                let cli = CLI(environment: ["AZURE_OPENAI_API_KEY": PostgresTests.key])
                cli.write(
                    "job.yaml",
                    """
                    name: restart
                    input: in.jsonl
                    endpoint: \(emulator.baseURL)
                    deployment: gpt-5-mini
                    auth: api-key
                    state: \(server.url(schema: "restart"))
                    limits: {concurrency: 16, timeout: 10}
                    """
                )
                cli.write("in.jsonl", (1...rows).map { "{\"id\": \"r\($0)\", \"prompt\": \"Prompt \($0)\"}" }.joined(separator: "\n") + "\n")
                let (run, out, err) = try cli.start(["run", "job.yaml", "--no-progress"])
                // Once answers are being committed, well before the end.
                while emulator.stats.requests < 300, run.isRunning { try await Task.sleep(for: .milliseconds(10)) }
                #expect(run.isRunning, "the restart lands mid-run")
                try await server.restart()
                let result = try await CLI.finish(run, out, err)
                #expect(result.status == 0, "\(result.stderr)")
                // Whether the run says it saw the restart depends on the moment: a statement on the
                // wire fails and is tried again (and warned of), while a worker between statements
                // just waits for the pool's next connection. Either way nothing may be lost.
                let status = try await cli.run("status", "job.yaml", "--json").json
                #expect(status["succeeded"] as? Int == rows && status["pending"] as? Int == 0 && status["running"] as? Int == 0, "\(status)")
                let ids = cli.lines("out/restart.jsonl").compactMap { $0["custom_id"] as? String }
                #expect(ids.count == rows && Set(ids).count == rows, "every row once in the results")
                // Claims whose answers the restart cut off return when their leases expire; at most a worker's claim each.
                #expect(emulator.stats.repeatedAnswers <= 32, "\(emulator.stats.repeatedAnswers) answers went twice")
            }
        }
    }
}

/// TLS as `sslmode` asks, against a cluster that takes TLS only: the queue negotiates it
/// itself (PostgreSQL's SSLRequest), so every mode is tried here, and a refusal is a setting
/// to fix (exit 2 at once), never an outage to wait out.
@Suite(.timeLimit(.minutes(3)), .enabled(if: PrivatePostgres.binaries != nil || PostgresJob.required))
struct PostgresTLSTests {
    @Test func everySSLModeConnectsOrRefusesAsLibpqWould() async throws {
        try await PrivatePostgres.withRunning(tls: true) { server in
            let home = TemporaryDirectory()
            func load(_ mode: String, host: String = "localhost", authority: String? = nil) async throws -> CLI.Result {
                var environment = ["HOME": home.path, "FOUNDRY_BATCH_STATE_PATIENCE": "600"]
                environment["PGSSLROOTCERT"] = authority
                let cli = CLI(environment: environment)
                let url = server.url(schema: "tls_" + mode.replacingOccurrences(of: "-", with: "_")).replacingOccurrences(of: "127.0.0.1", with: host)
                cli.write("job.yaml", "name: tls\ninput: in.jsonl\nendpoint: emulator\ndeployment: gpt-5-mini\nstate: \(url)&sslmode=\(mode)\n")
                cli.write("in.jsonl", "{\"id\": \"r1\", \"prompt\": \"p\"}\n")
                return try await cli.run("load", "job.yaml", timeout: 60)
            }
            for mode in ["prefer", "require"] {
                let result = try await load(mode)
                #expect(result.status == 0, "\(mode): \(result.stderr)")
            }
            let verified = try await load("verify-full", authority: server.authority)
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(try await load("verify-ca", host: "127.0.0.1", authority: server.authority).status == 0, "verify-ca checks no name")

            // Refusals: each at once (the patience is 10 minutes), each with its fix.
            let plain = try await load("disable")
            #expect(plain.status == 2 && plain.stderr.contains("TLS connections only"), "the server takes TLS only: \(plain.stderr)")
            let untrusted = try await load("verify-full")
            #expect(untrusted.status == 2 && untrusted.stderr.contains("not signed by an authority trusted here"), "\(untrusted.stderr)")
            #expect(untrusted.stderr.contains("PGSSLROOTCERT"))
            let misnamed = try await load("verify-full", host: "127.0.0.1", authority: server.authority)
            #expect(misnamed.status == 2 && misnamed.stderr.contains("does not name 127.0.0.1"), "\(misnamed.stderr)")
        }
    }
}
