import FoundryTestSupport
import Foundation
import Testing
@testable import FoundryBatch

/// Mutated and random inputs: nothing crashes or hangs, and every rejection is a clear
/// message, never a raw decoding error. Seeded, so a failure repeats.
@Suite struct FuzzTests {
    typealias Generator = SeededRandom

    static let seeds: [String] = [
        #"{"id": "a", "prompt": "Hello \u00e9 world", "meta": {"x": [1, 2.5e3, null, true]}}"#,
        #"{"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}"#,
        #"{"id": 3, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}"#,
        #"{"input": ["a", "b"], "tag": "\ud83d\ude00"}"#,
    ]

    static let fragments: [[UInt8]] = ["{", "}", "[", "]", "\"", ":", ",", "\\", "\\u", "null", "1e999", "-", "\u{0}", "\r", "\n", " "]
        .map { Array($0.utf8) } + [[0xFF], [0xC3], [0xE2, 0x82], [0xEF, 0xBB, 0xBF]]

    static func mutate(_ line: [UInt8], _ random: inout Generator) -> [UInt8] {
        var bytes = line
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<5, using: &random) {
            case 0 where !bytes.isEmpty: bytes.remove(at: position)
            case 1: bytes.insert(contentsOf: fragments.randomElement(using: &random) ?? [], at: position)
            case 2 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &random)
            case 3: bytes = Array(bytes.prefix(position))
            default: bytes.insert(UInt8.random(in: 0x20...0x7E, using: &random), at: position)
            }
        }
        return bytes
    }

    static func looksClear(_ message: String) -> Bool {
        !message.isEmpty && !message.contains("DecodingError") && !message.contains("Swift.") && !message.contains("Optional(")
    }

    @Test func mutatedInputLinesAreAcceptedOrRejectedClearly() {
        var random = Generator(seed: 2026)
        var accepted = 0, rejected = 0
        for index in 0..<4000 {
            let seed = Array(Self.seeds[index % Self.seeds.count].utf8)
            let line = Self.mutate(seed, &random)
            switch InputLine.parse(line[...], defaultID: "f:\(index)") {
            case .success(let parsed):
                accepted += 1
                #expect(!parsed.id.isEmpty)
            case .failure(let problem):
                rejected += 1
                #expect(Self.looksClear(problem.message), "\(problem.message)")
            }
        }
        #expect(accepted > 0 && rejected > 0)
    }

    @Test func randomBytesNeverCrashTheParser() {
        var random = Generator(seed: 7)
        for _ in 0..<3000 {
            let count = Int.random(in: 0..<64, using: &random)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            if case .failure(let problem) = InputLine.parse(bytes[...], defaultID: "x") {
                #expect(Self.looksClear(problem.message))
            }
        }
    }

    @Test func aMutatedFileLoadsWholeOrNotAtAll() async throws {
        var random = Generator(seed: 99)
        for round in 0..<30 {
            let fixture = try await Fixture()
            var lines: [[UInt8]] = (0..<20).map { Array("{\"id\": \"r\($0)\", \"prompt\": \"p\($0)\"}".utf8) }
            let victim = Int.random(in: 0..<20, using: &random)
            lines[victim] = Self.mutate(lines[victim], &random)
            let path = fixture.directory.write("in.jsonl", bytes: Array(lines.joined(separator: [0x0A])))
            do {
                let report = try await Loader(job: fixture.job, queue: fixture.queue).load(files: [path])[0]
                #expect(try await fixture.total() == report.inserted)
            } catch let error as InputError {
                #expect(Self.looksClear(error.description), "round \(round): \(error)")
                #expect(error.line != nil)
                #expect(try await fixture.total() == 0, "nothing is half-loaded")
            }
        }
    }

    @Test func mutatedJobFilesAreAcceptedOrRejectedWithFileAndKey() {
        let valid = """
            name: fuzz
            input: [a.jsonl, b.jsonl]
            endpoint: https://example.openai.azure.com
            deployment: gpt-5-mini
            request: {system: "x", max_tokens: 10}
            limits: {concurrency: 4, timeout: 30}
            variants:
              - {name: a, deployment: d1}
            """
        var random = Generator(seed: 11)
        var rejected = 0
        for _ in 0..<1500 {
            let mutated = String(decoding: Self.mutate(Array(valid.utf8), &random), as: UTF8.self)
            do {
                _ = try JobFile.parse(yaml: mutated, path: "/tmp/fuzz.yaml", displayPath: "fuzz.yaml")
            } catch {
                rejected += 1
                #expect(error.description.hasPrefix("fuzz.yaml"))
                #expect(Self.looksClear(error.message), "\(error)")
            }
        }
        #expect(rejected > 0)
    }
}
