import AsyncHTTPClient
@testable import FoundryAuth
import FoundryTestSupport
import Foundation
import GRDB
import NIOHTTP1
import Testing
@testable import FoundryBatch

/// The runner against a service that misbehaves: each test scripts a small server on
/// loopback the way a hostile or odd endpoint answers, and checks that no secret leaks, no
/// number crashes the run, nothing hangs past the job's limits, and no row is lost.
@Suite(.timeLimit(.minutes(1))) struct HostileServiceTests {
    static let key = "hostile-test-key"

    static let ok = #"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#

    func prompts(_ count: Int) -> String {
        (1...count).map { "{\"id\": \"p\($0)\", \"prompt\": \"Question \($0)\"}" }.joined(separator: "\n")
    }

    /// Runs `fixture` against `baseURL` with an api-key and returns the summary.
    func run(
        _ fixture: Fixture, baseURL: String, concurrency: Int = 4, maxAttempts: Int? = nil, apiVersion: String? = nil,
        control: RunControl = RunControl(), gracePeriod: TimeInterval = 1
    ) async throws -> RunSummary {
        let http = HTTPClient.forRun(concurrency: concurrency)
        let target = ServiceTarget(baseURL: baseURL, apiVersion: apiVersion, authorization: .apiKey(Self.key))
        let session = try fixture.session(concurrency: concurrency, maxAttempts: maxAttempts)
        let options = RunOptions(progress: .none, gracePeriod: gracePeriod)
        do {
            let summary = try await BatchRun.execute(session: session, service: ServiceSession(http: http, target: target), options: options, control: control)
            try await http.shutdown()
            return summary
        } catch {
            try await http.shutdown()
            throw error
        }
    }

    // MARK: Security

    @Test func aRedirectIsNotFollowedAndTheKeyStaysHome() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(3))
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(Self.ok))] }) { elsewhere in
            try await ScriptedServer.withRunning({ _, _ in
                [.send(ScriptedServer.response(status: 307, headers: [("Location", "\(elsewhere.baseURL)/steal?sig=topsecret")]))]
            }) { server in
                let summary = try await run(fixture, baseURL: server.baseURL)
                #expect(summary.exitStatus == .rowsFailed)
                #expect(summary.counts.failed == 3)
                #expect(elsewhere.requests.isEmpty, "nothing, and so no api-key, reached the redirect's target")
                let errors = fixture.directory.jsonLines("out/test.errors.jsonl")
                let message = errors.first?["error"]?["message"]?.stringValue ?? ""
                #expect(errors.first?["error"]?["code"]?.stringValue == "redirected")
                #expect(message.contains(elsewhere.baseURL), "names the Location's origin")
                #expect(!message.contains("topsecret"), "but not its query")
            }
        }
    }

    @Test func aCredentialIsNeverSentOverPlainHTTPToAnotherMachine() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(2))
        // 192.0.2.1 (TEST-NET-1) is never contacted: the request is refused before it is built.
        let summary = try await run(fixture, baseURL: "http://192.0.2.1:9")
        #expect(summary.exitStatus == .stopped)
        #expect(summary.stop?.message.contains("plain http") == true)
        #expect(summary.counts.pending == 2)
    }

    // MARK: A service's numbers

    @Test(arguments: [
        ("retry-after", "inf"), ("retry-after", "nan"), ("retry-after", "-5"), ("retry-after-ms", "-1e300"), ("retry-after", "soon"),
    ])
    func unusableRetryAfterValuesAreIgnored(header: String, value: String) async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(1))
        try await ScriptedServer.withRunning({ _, index in
            index == 0
                ? [.send(ScriptedServer.json(status: 429, headers: [(header, value)], #"{"error":{"code":"429","message":"slow down"}}"#))]
                : [.send(ScriptedServer.json(Self.ok))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL)
            #expect(summary.exitStatus == .success)
            #expect(server.requests.count == 2)
        }
    }

    @Test(arguments: [("retry-after", "99999999999999999999"), ("retry-after-ms", "1e300"), ("x-ms-retry-after-ms", "1e30")])
    func hugeRetryAfterValuesStopTheRunInsteadOfCrashing(header: String, value: String) async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(6))
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.json(status: 429, headers: [(header, value)], #"{"error":{"code":"429","message":"quota"}}"#))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL)
            #expect(summary.exitStatus == .stopped)
            #expect(summary.stop?.message.contains("limits.max_retry_wait") == true)
            #expect(summary.counts.pending == 6, "no row is left running or lost")
        }
    }

    @Test func aFatalRetryAfterNeitherHoldsThePoolNorSendsAgain() async throws {
        // Without the fix the gate stayed paused for the 400 s, the run waited it out, and a
        // worker sent again afterwards: the suite's time limit would catch the first.
        let fixture = try await Fixture(yaml: "limits: {max_retry_wait: 30}")
        _ = try await fixture.load(prompts(40))
        try await ScriptedServer.withRunning({ _, _ in
            [.pause(seconds: 0.05), .send(ScriptedServer.json(status: 429, headers: [("retry-after", "400")], #"{"error":{"code":"429","message":"quota"}}"#))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, concurrency: 8)
            #expect(summary.exitStatus == .stopped)
            #expect(server.requests.count <= 8, "only the first wave went out")
            #expect(summary.counts.pending == 40)
        }
    }

    @Test func aSignalAfterAFatalStopEndsInFlightRequestsAtOnce() async throws {
        let fixture = try await Fixture(yaml: "limits: {max_retry_wait: 1, timeout: 50}")
        _ = try await fixture.load(prompts(3))
        let control = RunControl()
        try await ScriptedServer.withRunning({ _, index in
            index == 0
                ? [.send(ScriptedServer.json(status: 429, headers: [("retry-after", "400")], #"{"error":{"code":"429","message":"quota"}}"#))]
                : [.pause(seconds: 40)]
        }) { server in
            // A grace period of 60 s: only the signal can end the stalled requests in time.
            async let summary = run(fixture, baseURL: server.baseURL, concurrency: 3, control: control, gracePeriod: 60)
            while await control.reason == nil { try await Task.sleep(for: .milliseconds(10)) }
            let signalled = ContinuousClock.now
            await control.stop(.interrupted)
            let result = try await summary
            #expect(ContinuousClock.now - signalled < .seconds(20), "the signal ended the stalled requests, not the grace period")
            #expect(result.exitStatus == .stopped)
            #expect(result.counts.pending == 3)
        }
    }

    @Test func aStalledBodyTimesOutAndKeepsTheClientRequestID() async throws {
        // 2 s, not less: on a loaded machine a shorter deadline can pass before the request reaches the server.
        let fixture = try await Fixture(yaml: "limits: {timeout: 2}")
        _ = try await fixture.load(prompts(1))
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.head(status: 200, headers: [("Content-Length", "500"), ("Content-Type", "application/json")])), .send(Array("{\"id\":".utf8)), .pause(seconds: 30)]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, maxAttempts: 2)
            #expect(summary.exitStatus == .rowsFailed)
            #expect(summary.counters.requests == 2)
            #expect(summary.counters.retries == 1, "the last try that gave up is not a retry")
            let errors = fixture.directory.jsonLines("out/test.errors.jsonl")
            #expect(errors.first?["error"]?["code"]?.stringValue == "timeout")
            // On a loaded machine the server may read the last request after the client gave up on it.
            for _ in 0..<500 where server.requests.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
            let sent = server.requests.last?.header("x-ms-client-request-id") ?? "-"
            #expect(errors.first?["id"]?.stringValue == "batch_req_" + sent, "the output names the try that reached the service")
            let history = try await fixture.pool.read { db in
                try String.fetchAll(db, sql: "SELECT client_request_id FROM attempts ORDER BY attempt")
            }
            #expect(history == server.requests.compactMap { $0.header("x-ms-client-request-id") })
        }
    }

    @Test func aLongRetryAfterOnAServerErrorStopsTheRun() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(2))
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.json(status: 503, headers: [("retry-after", "100000")], #"{"error":{"code":"ServiceUnavailable","message":"busy"}}"#))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL)
            #expect(summary.exitStatus == .stopped)
            #expect(summary.stop?.message.contains("HTTP 503") == true)
            #expect(summary.counts.pending == 2)
        }
    }

    @Test func aNeverEnding429BacksOffAndStopsWithinMaxRetryWait() async throws {
        // LiteLLM's 429 carries no Retry-After: the pool backs off 1, 2, 4 ... s and stops once
        // it has seen nothing but 429s for longer than max_retry_wait.
        let fixture = try await Fixture(yaml: "limits: {max_retry_wait: 3}")
        _ = try await fixture.load(prompts(5))
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.json(status: 429, #"{"error":{"message":"No deployments available for selected model","type":"None","code":"429"}}"#))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, concurrency: 5)
            #expect(summary.exitStatus == .stopped)
            #expect(summary.stop?.message.contains("nothing but 429") == true)
            #expect(server.requests.count <= 20, "backs off instead of looping once a second (\(server.requests.count) requests)")
            #expect(summary.counts.pending == 5)
        }
    }

    @Test func aRowThrottledForLongWhileOthersSucceedFailsWithThe429sCode() async throws {
        // One request is always refused (too large for what is left of the quota, say) while
        // the rest are answered: that row ends failed instead of circling for ever.
        let fixture = try await Fixture(yaml: "limits: {max_retry_wait: 0.5}")
        _ = try await fixture.load(prompts(1) + "\n" + (2...40).map { "{\"id\": \"p\($0)\", \"prompt\": \"Question \($0)\"}" }.joined(separator: "\n"))
        try await ScriptedServer.withRunning({ request, _ in
            request.bodyText.contains("Question 1\"")
                ? [.send(ScriptedServer.json(status: 429, #"{"error":{"code":"tokens_exceeded","message":"too large"}}"#))]
                : [.pause(seconds: 0.2), .send(ScriptedServer.json(Self.ok))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, concurrency: 2)
            #expect(summary.exitStatus == .rowsFailed)
            #expect(summary.counts.succeeded == 39 && summary.counts.failed == 1)
            let failed = fixture.directory.jsonLines("out/test.errors.jsonl").first
            #expect(failed?["custom_id"]?.stringValue == "p1")
            #expect(failed?["error"]?["code"]?.stringValue == "tokens_exceeded")
        }
    }

    @Test func insufficientQuotaIsFatalAndNotARateLimit() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(4))
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.json(status: 429, #"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, concurrency: 2)
            #expect(summary.exitStatus == .stopped)
            #expect(summary.stop?.message.contains("insufficient_quota") == true)
            #expect(server.requests.count <= 2)
        }
    }

    @Test func a429KeepsTheServicesOwnCode() {
        #expect(RetryPolicy.rowCode(status: 429, code: "tokens_exceeded") == "tokens_exceeded")
        #expect(RetryPolicy.rowCode(status: 429, code: "429") == "rate_limited")
        #expect(RetryPolicy.rowCode(status: 429, code: nil) == "rate_limited")
    }

    @Test func absurdUsageCountsDoNotOverflowTheBudget() async throws {
        let fixture = try await Fixture(yaml: "limits: {max_tokens_total: 1000000}")
        _ = try await fixture.load(prompts(3))
        let huge = #"{"id":"c","choices":[],"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807,"total_tokens":1e30}}"#
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(huge))] }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, concurrency: 1)
            #expect(summary.counts.total == 3)
            // Counts past 10^12 are not believed: they neither crash the sums nor spend the budget.
            #expect(summary.exitStatus == .success)
            #expect(summary.counts.succeeded == 3 && summary.counts.promptTokens == 0 && summary.counters.promptTokens == 0)
        }
    }

    // MARK: Bodies

    @Test func aPrettyPrintedAnswerIsWrittenOnOneLine() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(2))
        let pretty = """
            {
              "id": "c",
              "choices": [
                {"message": {"role": "assistant", "content": "two\\nlines"}}
              ],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            }
            """
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(pretty))] }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL)
            #expect(summary.exitStatus == .success)
            let text = fixture.directory.read("out/test.jsonl")
            #expect(text.split(separator: "\n").count == 2, "one physical line per row")
            let lines = fixture.directory.jsonLines("out/test.jsonl")
            #expect(lines.count == 2)
            #expect(lines.first?["response"]?["body"]?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == "two\nlines")
            #expect(summary.counts.promptTokens == 6)
        }
    }

    @Test(arguments: [
        [0xEF, 0xBB, 0xBF] + Array(ok.utf8), Array(#"{"choices":[],"a":"x\#ty"}"#.utf8), Array(#"{"choices":[],"a":"x"#.utf8) + [0] + Array(#"y"}"#.utf8),
    ])
    func anyAcceptedBodyIsWrittenAsValidJSON(body: [UInt8]) async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(1))
        let answer = ScriptedServer.head(status: 200, headers: [("Content-Length", String(body.count)), ("Content-Type", "application/json")]) + body
        try await ScriptedServer.withRunning({ _, _ in [.send(answer)] }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, maxAttempts: 1)
            let lines = fixture.directory.read("out/test.jsonl").split(separator: "\n") + fixture.directory.read("out/test.errors.jsonl").split(separator: "\n")
            #expect(lines.count == 1)
            #expect(lines.allSatisfy { (try? JSONParser.parse(String($0))) != nil }, "\(lines)")
            #expect(summary.counts.succeeded + summary.counts.failed == 1)
        }
    }

    @Test(arguments: ["<html>proxy error</html>", "", "[1, 2]", "\"text\""])
    func aSuccessThatIsNotAJSONObjectIsRetriedThenFails(body: String) async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(1))
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.response(status: 200, body: body))] }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, maxAttempts: 2)
            #expect(summary.exitStatus == .rowsFailed)
            #expect(server.requests.count == 2)
            #expect(fixture.directory.jsonLines("out/test.errors.jsonl").first?["error"]?["code"]?.stringValue == "invalid_response")
        }
    }

    @Test func aRetryAfterOfZeroThatNeverEndsBacksOffAnyway() async throws {
        let fixture = try await Fixture(yaml: "limits: {max_retry_wait: 3}")
        _ = try await fixture.load(prompts(2))
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.json(status: 429, headers: [("retry-after", "0")], #"{"error":{"code":"429","message":"busy"}}"#))]
        }) { server in
            let summary = try await run(fixture, baseURL: server.baseURL, concurrency: 2)
            #expect(summary.exitStatus == .stopped)
            #expect(server.requests.count <= 30, "\(server.requests.count) requests in about 3 s")
            #expect(summary.counters.retries == summary.counters.requests - 2, "retries are requests beyond each row's first")
        }
    }

    @Test func serviceTextIsMadePrintableAndCodesStayCodes() {
        let hostile = "bad\u{1B}[2J\u{1B}[31mX\nfake line"
        let verdict = RetryPolicy.classify(
            .response(status: 400, headers: [:], body: Array(#"{"error":{"code":"bad\u001b[2J\nX","message":"\u001b]0;title\u0007\r\nstopped: fine"}}"#.utf8), latencyMs: 1),
            deployment: "d", url: "u"
        )
        guard case .permanent(let error) = verdict else { Issue.record("expected a permanent error"); return }
        #expect(!error.message.unicodeScalars.contains { $0.properties.generalCategory == .control })
        #expect(error.code == "bad2JX")
        #expect(ServiceText.printable(hostile, limit: 5) == "bad [...")
        #expect(ServiceText.code(String(repeating: "c", count: 1000))?.count == 64)
        #expect(RetryPolicy.classify(.tooLarge(limit: 1 << 26, latencyMs: 1), deployment: "d", url: "u") == .permanent(RowError(code: "response_too_large", message: "the answer was larger than 64 MiB")))
    }

    @Test func anOddUsageBlockDoesNotTurnTheBodyIntoText() {
        let body = ServiceBody.decode(Array(#"{"choices":[],"usage":{"prompt_tokens":1.5,"completion_tokens":"x"}}"#.utf8))
        #expect(body != nil)
        #expect(body?.usage?.promptTokens == nil)
    }

    // MARK: Routes

    @Test func anEndpointWithAPathKeepsTheAPIVersionAndTheDeployment() {
        let gateway = ServiceTarget(baseURL: "https://apim.example/aoai", apiVersion: "2024-10-21", authorization: .none)
        #expect(gateway.url(api: .chat, deployment: "gpt-5-mini") == "https://apim.example/aoai/openai/deployments/gpt-5-mini/chat/completions?api-version=2024-10-21")
        let compatible = ServiceTarget(baseURL: "http://localhost:8000/v1", apiVersion: nil, authorization: .none)
        #expect(compatible.url(api: .chat, deployment: "m") == "http://localhost:8000/v1/chat/completions")
        let odd = ServiceTarget(baseURL: "https://r.example", apiVersion: "x&y=1", authorization: .none)
        #expect(odd.url(api: .embeddings, deployment: "a/b?c") == "https://r.example/openai/deployments/a%2Fb%3Fc/embeddings?api-version=x%26y%3D1")
    }

    // MARK: Leases

    @Test func aLeaseOfAnotherPidSpaceIsNeverTakenForDead() {
        let host = ProcessInfo.processInfo.hostName
        // pid 2^30 does not exist here; only an owner of this pid space may be judged by it.
        #expect(LeaseOwner.isDeadLocal("\(host)/1073741824/abcd1234/\(LeaseOwner.space)"))
        #expect(!LeaseOwner.isDeadLocal("\(host)/1073741824/abcd1234/otherspace00"))
        #expect(!LeaseOwner.isDeadLocal("\(host)/1073741824/abcd1234"), "an owner without a space waits for its lease")
        #expect(LeaseOwner.make().split(separator: "/").count == 4)
    }

    // MARK: Entra

    func withClient(_ body: (HTTPClient) async throws -> Void) async throws {
        let http = HTTPClient.forRun(concurrency: 1)
        do {
            try await body(http)
            try await http.shutdown()
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    func tokenClient(_ base: String, timeout: Int64 = 30, http: HTTPClient) -> EntraTokenClient {
        EntraTokenClient(http: http, authorityHost: base, tenantID: "t", clientID: "c", credential: "client-secret", timeout: Bounded.timeAmount(seconds: Double(timeout)))
    }

    @Test func aTokenEndpointRedirectNeverReceivesTheSecret() async throws {
        try await withClient { http in
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(#"{"access_token":"x","expires_in":60}"#))] }) { elsewhere in
            try await ScriptedServer.withRunning({ _, _ in
                [.send(ScriptedServer.response(status: 307, headers: [("Location", "\(elsewhere.baseURL)/t/oauth2/v2.0/token?code=hush")]))]
            }) { server in
                do throws(AuthError) {
                    _ = try await tokenClient(server.baseURL, http: http).requestToken(scope: "s", authentication: [("client_secret", "very-secret")])
                    Issue.record("a redirect was followed")
                } catch {
                    #expect(error.kind == .misconfigured)
                    #expect(error.message.contains(elsewhere.baseURL) && !error.message.contains("hush"))
                }
                #expect(elsewhere.requests.isEmpty, "the re-sent POST with client_secret never left")
            }
        }
        }
    }

    @Test func aStalledTokenAnswerTimesOut() async throws {
        try await withClient { http in
        try await ScriptedServer.withRunning({ _, _ in
            [.send(ScriptedServer.head(status: 200, headers: [("Content-Length", "100")])), .send(Array("{".utf8)), .pause(seconds: 30)]
        }) { server in
            do throws(AuthError) {
                _ = try await tokenClient(server.baseURL, timeout: 1, http: http).requestToken(scope: "s", authentication: [])
                Issue.record("a stalled answer gave a token")
            } catch {
                #expect(error.kind == .network)
                #expect(error.message.contains("timed out"))
            }
        }
        }
    }

    @Test(arguments: [#"{"access_token":"x","expires_in":"inf"}"#, #"{"access_token":"x","expires_in":-5}"#, #"{"access_token":"","expires_in":60}"#])
    func anUnusableTokenAnswerIsAnErrorNotACrash(body: String) async throws {
        try await withClient { http in
        try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(body))] }) { server in
            await #expect(throws: AuthError.self) {
                _ = try await tokenClient(server.baseURL, http: http).requestToken(scope: "s", authentication: [])
            }
        }
        let huge = try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(#"{"access_token":"x","expires_in":1e300}"#))] }) { server in
            try await tokenClient(server.baseURL, http: http).requestToken(scope: "s", authentication: [])
        }
        #expect(Bounded.int(huge.expiresOn.timeIntervalSinceNow) > 0, "a huge lifetime is clamped, and dates built from it hold")
        }
    }

    // MARK: Second review

    @Test func aKeyThatCannotGoInAHeaderStopsTheRunWithoutQuotingIt() async throws {
        let fixture = try await Fixture(yaml: "auth: api-key")
        let http = HTTPClient.forRun(concurrency: 1)
        defer { Task { try? await http.shutdown() } }
        do {
            _ = try ServiceTarget.resolve(
                spec: fixture.job.targetsToUse[0], job: fixture.job, baseURL: "https://r.example",
                environment: CredentialEnvironment(["AZURE_OPENAI_API_KEY": "s3cr3t\u{01}KEY"]), http: http, credentials: CredentialCache()
            )
            Issue.record("a key with a control character was accepted")
        } catch let error as FatalCondition {
            #expect(!error.message.contains("s3cr3t"))
            #expect(error.exitStatus == .stopped)
        }
    }

    @Test(arguments: [#"{"access_token":"tok\r\nX-Injected: 1","expires_in":3600}"#, #"{"access_token":"","expires_in":3600}"#, #"{"access_token":"tok","expires_on":"1"}"#])
    func anIdentityEndpointsUnusableTokenIsRefusedWithoutQuotingIt(body: String) async throws {
        try await withClient { http in
            try await ScriptedServer.withRunning({ _, _ in [.send(ScriptedServer.json(body))] }) { server in
                let credential = ManagedIdentityCredential(source: .appService(endpoint: server.baseURL + "/msi/token", header: "h"), clientID: nil, http: http)
                do throws(AuthError) {
                    _ = try await credential.getToken(scope: cognitiveServicesScope)
                    Issue.record("an unusable token was accepted")
                } catch {
                    #expect(!error.description.contains("X-Injected"))
                }
            }
        }
    }

    @Test(arguments: [#"{"x":01}"#, #"{"x":1.}"#, #"{"x":"\q"}"#, #"{"a":1,}"#, #"{"x":[1,]}"#])
    func aBodyThatOnlyALenientParserAcceptsIsNoAnswer(body: String) async throws {
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(1))
        try await ScriptedServer.withRunning({ _, index in
            index == 0
                ? [.send(ScriptedServer.json(status: 400, #"{"error":{"code":"content_filter","message":"x",},"n":01}"#))]
                : [.send(ScriptedServer.json(body))]
        }) { server in
            let first = try await run(fixture, baseURL: server.baseURL, maxAttempts: 1)
            #expect(first.counts.failed == 1)
            let errors = fixture.directory.read("out/test.errors.jsonl").split(separator: "\n")
            #expect(errors.count == 1 && errors.allSatisfy { (try? JSONParser.parse(String($0))) != nil }, "an invalid error body is kept as a string")
            _ = try await fixture.queue.requeueFailed(RequeueFilter())
            let second = try await run(fixture, baseURL: server.baseURL, maxAttempts: 1)
            #expect(second.counts.failed == 1)
            #expect(fixture.directory.jsonLines("out/test.errors.jsonl").first?["error"]?["code"]?.stringValue == "invalid_response")
        }
    }

    @Test func aStalledTokenRequestDoesNotHoldAStoppingRun() async throws {
        // A credential that never answers and ignores cancellation, like a token endpoint that
        // accepted the request and went silent. Without a cancellable wait the run would hang
        // here past the suite's time limit.
        struct Silent: TokenCredential {
            var name: String { "silent" }
            func getToken(scope: String) async throws(AuthError) -> AccessToken {
                await withCheckedContinuation { (_: CheckedContinuation<Void, Never>) in }
                throw AuthError(.network, credential: name, "unreachable")
            }
        }
        let fixture = try await Fixture()
        _ = try await fixture.load(prompts(3))
        let http = HTTPClient.forRun(concurrency: 2)
        let control = RunControl()
        let provider = TokenProvider(credential: Silent())
        let target = ServiceTarget(baseURL: "http://127.0.0.1:9", apiVersion: nil, authorization: .bearer(provider))
        async let summary = BatchRun.execute(
            session: try fixture.session(concurrency: 2), service: ServiceSession(http: http, target: target),
            options: RunOptions(progress: .none, gracePeriod: 0.5), control: control
        )
        // Stop once a worker is waiting on the silent token request, not after a guessed delay.
        while await provider.requests == 0 { try await Task.sleep(for: .milliseconds(5)) }
        await control.stop(.interrupted)
        let result = try await summary
        try await http.shutdown()
        #expect(result.exitStatus == .interrupted)
        #expect(result.counts.pending == 3, "rows were released")
    }

    @Test func anHTTPClientErrorNeverQuotesTheHeaderItRefused() {
        let described = HTTPTransport.describe(HTTPClientError.invalidHeaderFieldValues(["api-key-value-s3cr3t"]))
        #expect(!described.contains("s3cr3t"))
        #expect(described.contains("invalidHeaderFieldValues"))
    }

    @Test func textFromAServiceCannotDriveATerminal() throws {
        #expect(!TransportSecurity.origin(ofLocation: "https://ev%1b%5b31mil%07.example/x").unicodeScalars.contains { $0.value < 0x20 })
        #expect(!ServiceText.printable("a\u{202E}b\u{2028}c", limit: 50).unicodeScalars.contains { $0.value == 0x202E || $0.value == 0x2028 })
        let claims = #"{"tid":"\u001b[31mRED","appid":"a\u202eevil\nline2"}"#
        let jwt = "e30." + Data(claims.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "") + ".sig"
        let parsed = try #require(TokenClaims(jwt: jwt))
        #expect(parsed.tenantID == "[31mRED")
        #expect(parsed.appID?.contains("\n") == false)
        #expect(ServiceBody.exportable("{\n  \"a\": 1\n}") == #"{"a":1}"#)
        #expect(ServiceBody.exportable("not json\n") == #""not json\n""#)
    }
}
