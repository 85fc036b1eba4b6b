import AsyncHTTPClient
import FoundryAuth
import FoundryTestSupport
import Foundation
import Synchronization
import Testing
@testable import FoundryBatch

/// A fuzz pass over service answers: a scripted server answers each request with a status,
/// headers and a body drawn at random (odd Retry-After values, redirects, truncated and
/// stalled bodies, bytes that are not HTTP, absurd usage numbers). Runs are repeated until
/// every row is done; after each, no row may be lost, left running, or written twice, and
/// every output line must parse. Seeded, so a failure repeats.
@Suite(.timeLimit(.minutes(3))) struct ServiceFuzzTests {
    static let ok = #"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#

    static let delays = ["0", "0.05", "inf", "nan", "-1", "1e300", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", ""]
    static let counts = ["-5", "abc", "1e30", "0", "99999999999999999999", "7"]

    /// One random answer. Mostly successes, so that rows finish; every odd shape often enough.
    static func answer(_ random: inout SeededRandom) -> [ScriptedServer.Action] {
        func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }
        var headers: [(String, String)] = []
        if random.next() % 3 == 0 { headers.append(("retry-after", pick(delays))) }
        if random.next() % 5 == 0 { headers.append(("retry-after-ms", pick(delays))) }
        if random.next() % 4 == 0 { headers.append(("x-ratelimit-remaining-tokens", pick(counts))) }
        if random.next() % 8 == 0 { headers.append(("x-should-retry", pick(["true", "false", "maybe"]))) }
        if random.next() % 10 == 0 { headers.append(("x-odd", String(repeating: "v", count: 8000))) }
        switch random.next() % 20 {
        case 0..<8: return [.send(ScriptedServer.json(headers: headers, ok))]
        case 8: return [.send(ScriptedServer.json(headers: headers, "{\n  \"choices\": [],\n  \"usage\": {\"prompt_tokens\": 1e400, \"completion_tokens\": -3}\n}"))]
        case 9: return [.send(ScriptedServer.response(status: 200, headers: headers, body: "<html>not json</html>"))]
        case 10:
            let status = pick([429, 429, 500, 502, 503, 408])
            return [.send(ScriptedServer.json(status: status, headers: headers, #"{"error":{"code":"\#(status)","message":"Please retry after \#(pick(delays)) seconds."}}"#))]
        case 11: return [.send(ScriptedServer.json(status: 400, headers: headers, #"{"error":{"code":"content_filter","message":"filtered"}}"#))]
        case 12: return [.send(ScriptedServer.response(status: pick([301, 302, 307, 308]), headers: [("Location", "http://192.0.2.1/x?sig=no")]))]
        case 13: return [.send(ScriptedServer.head(status: 200, headers: headers + [("Content-Length", "900")])), .send(Array("{\"choi".utf8)), .close]
        case 14: return [.send(ScriptedServer.head(status: 200, headers: [("Content-Length", "900")])), .pause(seconds: 3)]
        case 15: return [.close]
        case 16: return [.send(Array("garbage that is not HTTP\r\n\r\n".utf8)), .close]
        case 17: return [.send(ScriptedServer.json(status: 429, headers: headers, #"{"error":{"code":"tokens_exceeded","message":"slow"}}"#))]
        case 18: return [.send(ScriptedServer.json(status: pick([413, 422, 409]), headers: headers, #"{"error":"a string, not an object"}"#))]
        default: return [.pause(seconds: 0.01), .send(ScriptedServer.json(headers: headers, ok))]
        }
    }

    @Test(arguments: [UInt64(11), 29])
    func randomAnswersLoseAndDoubleNoRow(seed: UInt64) async throws {
        let rows = 60
        let fixture = try await Fixture(yaml: "limits: {timeout: 0.3, max_retry_wait: 2, max_attempts: 4}")
        _ = try await fixture.load((1...rows).map { "{\"id\": \"f\($0)\", \"prompt\": \"Fuzz \($0)\"}" }.joined(separator: "\n"))
        let random = Mutex(SeededRandom(seed: seed))
        try await ScriptedServer.withRunning({ _, _ in random.withLock { Self.answer(&$0) } }) { server in
            var runs = 0
            while runs < 40 {
                runs += 1
                let http = HTTPClient.forRun(concurrency: 8)
                let target = ServiceTarget(baseURL: server.baseURL, apiVersion: nil, authorization: .apiKey("fuzz-key"))
                let summary = try await BatchRun.execute(
                    session: try fixture.session(concurrency: 8), service: ServiceSession(http: http, target: target),
                    options: RunOptions(progress: .none, gracePeriod: 0.5), control: RunControl()
                )
                try await http.shutdown()

                #expect(summary.counts.total == rows, "no row lost")
                #expect(summary.counts.running == 0, "no row left running")
                let results = fixture.directory.read("out/test.jsonl").split(separator: "\n")
                let errors = fixture.directory.read("out/test.errors.jsonl").split(separator: "\n")
                #expect(results.count == summary.counts.succeeded && errors.count == summary.counts.failed)
                var ids: [String] = []
                for line in results + errors {
                    let value = try? JSONParser.parse(String(line))
                    #expect(value != nil, "an output line does not parse: \(line.prefix(200))")
                    if let id = value?["custom_id"]?.stringValue { ids.append(id) }
                }
                #expect(Set(ids).count == ids.count, "a row written twice")
                if summary.counts.pending == 0 { break }
            }
            #expect(try await fixture.queue.counts().job.pending == 0, "every row done within \(runs) runs")
            #expect(server.requests.count > rows, "the odd answers were met and retried")
        }
    }
}
