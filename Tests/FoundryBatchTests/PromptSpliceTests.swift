@testable import FoundryBatch
import FoundryTestSupport
import Testing

/// The loader's fast path for simple prompt lines against the general one it stands in for.
@Suite struct PromptSpliceTests {
    func job(_ yaml: String) throws -> JobFile {
        let directory = TemporaryDirectory()
        return try JobFile.parse(yaml: "name: t\ninput: in.jsonl\nendpoint: emulator\n" + yaml, path: directory.file("job.yaml"))
    }

    /// The rows of `line` the general way: InputLine, then RequestBuilder per variant.
    func generalRows(_ line: String, job: JobFile) -> [NewRow]? {
        let builder = RequestBuilder(job: job)
        guard case .success(let input) = InputLine.parse(ArraySlice(line.utf8), defaultID: "in.jsonl:7") else { return nil }
        let metadata = input.metadata.isEmpty ? nil : JSONValue.object(input.metadata).jsonText
        var rows: [NewRow] = []
        for arm in builder.arms {
            guard case .success(let request) = builder.build(input, variant: arm) else { return nil }
            let estimate = RequestBuilder.estimatedTokens(request.body)
            rows.append(
                NewRow(
                    id: input.id, variant: arm.name, source: "in.jsonl:7", api: request.api, deployment: request.deployment,
                    body: request.body.jsonText, metadata: metadata, estimatedTokens: estimate.total,
                    estimatedPromptTokens: estimate.prompt, contentHash: input.contentHash
                )
            )
        }
        return rows
    }

    func fastRows(_ line: String, job: JobFile) -> [NewRow]? {
        PromptSplice(job: job, builder: RequestBuilder(job: job))?.rows(ArraySlice(line.utf8), defaultID: { "in.jsonl:7" }, source: "in.jsonl:7")
    }

    static let jobs = [
        "deployment: gpt-5-mini\nrequest: {max_tokens: 64}\n",
        "deployment: gpt-5-mini\nrequest: {system: \"Be brief.\", temperature: 0.2, max_tokens: 16}\n",
        "deployment: gpt-5-mini\napi: responses\nrequest: {system: \"Be brief.\", max_tokens: 16}\n",
        "deployment: text-embedding-3-small\napi: embeddings\n",
        "deployment: gpt-5-mini\nvariants:\n  - {name: a, request: {temperature: 0}}\n  - {name: b, deployment: gpt-4.1, request: {max_tokens: 5}}\n",
    ]

    static let lines = [
        #"{"id": "row-1", "prompt": "Summarise item 1 of the nightly batch.", "shard": 3}"#,
        #"{"prompt":"no id here"}"#,
        #"  {"id": 42, "prompt": "a number id", "score": -1.5e3, "ok": true, "none": null, "tag": "x"}  "#,
        #"{"id": "é-ü", "prompt": "non-ASCII id"}"#,
        #"{"id": "u", "prompt": "naïve café ☕ prompt"}"#,
        #"{"id": "esc", "prompt": "a \"quoted\" word"}"#,
        #"{"id": "slash", "prompt": "a\/b"}"#,
        #"{"id": "nested", "prompt": "p", "meta": {"a": [1, 2]}}"#,
        #"{"id": "twice", "prompt": "p", "prompt": "q"}"#,
        #"{"id": "", "prompt": "empty id"}"#,
        #"{"id": "empty prompt", "prompt": ""}"#,
        #"{"id": "both", "prompt": "p", "messages": [{"role": "user", "content": "m"}]}"#,
        #"{"id": "num", "prompt": 5}"#,
        #"{"id": "bad", "prompt": "p",}"#,
        #"{"id": "trail", "prompt": "p"} x"#,
        #"{"id": "lead0", "prompt": "p", "n": 01}"#,
        #"{"id": true, "prompt": "p"}"#,
        #"{"custom_id": "c", "prompt": "p", "url": "/v1/chat/completions", "body": {}}"#,
        #"{"id": "a\u0001b", "prompt": "p"}"#,
        "{\"id\": \"tab\tin id\", \"prompt\": \"p\"}",
        "{\"id\": \"ws\", \"prompt\" :\t\"p\" , \"k\" : 1 }",
    ]

    @Test(arguments: jobs)
    func everyLineTheFastPathTakesGivesTheRowsOfTheGeneralOne(yaml: String) throws {
        let job = try job(yaml)
        var taken = 0
        for line in Self.lines {
            guard let fast = fastRows(line, job: job) else { continue }
            taken += 1
            #expect(fast == generalRows(line, job: job), "\(line)")
        }
        // The common shapes go the fast way; the rest (escapes, nesting, repeats) do not.
        #expect(taken >= 5)
        for line in [Self.lines[5], Self.lines[6], Self.lines[7], Self.lines[8], Self.lines[13], Self.lines[14], Self.lines[15]] {
            #expect(fastRows(line, job: job) == nil, "\(line)")
        }
    }

    @Test func aRequestThatReplacesTheMessagesLeavesEveryLineToTheGeneralPath() throws {
        let job = try job("deployment: gpt-5-mini\nrequest: {messages: [{role: user, content: fixed}]}\n")
        #expect(PromptSplice(job: job, builder: RequestBuilder(job: job)) == nil)
    }
}
