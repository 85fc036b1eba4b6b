import FoundryEmulator
import Foundation
import Testing

/// The jobs in jobs/ run as the README's recipes say.
@Suite(.timeLimit(.minutes(3))) struct RecipeTests {
    /// A copy of the repository's jobs/ and samples/ in a fresh folder.
    func checkout() throws -> CLI {
        let cli = CLI()
        for folder in ["jobs", "samples"] {
            try FileManager.default.copyItem(atPath: CLI.repository + "/" + folder, toPath: cli.path(folder))
        }
        return cli
    }

    @Test func theNightlyJobRunsForAGivenDateAndSaysSoWhenTheInputIsMissing() async throws {
        let cli = try checkout()
        let dry = try await cli.run("run", "jobs/nightly.yaml", "--date", "2026-01-15", "--dry-run", "--json")
        #expect(dry.status == 0)
        #expect(dry.json["rows_to_send"] as? Int == 12)
        #expect(dry.json["completion_token_cap"] as? Int == 12 * 120)
        #expect((dry.json["maximum_cost"] as? Double ?? 0) > 0)
        let run = try await cli.run("run", "jobs/nightly.yaml", "--date", "2026-01-15", "--json", "--no-progress")
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.json["estimated_cost"] != nil)
        let lines = cli.lines("out/nightly/summaries-2026-01-15.jsonl")
        #expect(lines.count == 12)
        #expect((lines.first?["metadata"] as? [String: Any])?["section"] as? String == "local")
        #expect(FileManager.default.fileExists(atPath: cli.path(".foundry-batch/nightly-2026-01-15.sqlite")))
        let missing = try await cli.run("run", "jobs/nightly.yaml", "--date", "2026-01-16", "--no-progress")
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("articles-2026-01-16.jsonl: cannot open the input: no such file"))
    }

    @Test func theEvalSweepRunsEveryRowPerVariantAndStatusComparesThem() async throws {
        let cli = try checkout()
        let run = try await cli.run("run", "jobs/eval-sweep.yaml", "--json", "--no-progress")
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.json["total"] as? Int == 20)
        let lines = cli.lines("out/eval-sweep.jsonl")
        #expect(lines.count == 20)
        #expect(Set(lines.compactMap { $0["variant"] as? String }) == ["mini", "large-t07"])
        let large = lines.first { $0["variant"] as? String == "large-t07" }
        let body = (large?["response"] as? [String: Any])?["body"] as? [String: Any]
        #expect(body?["model"] as? String == "gpt-4.1")
        #expect((large?["metadata"] as? [String: Any])?["expected"] != nil)
        let status = try await cli.run("status", "jobs/eval-sweep.yaml", "--json")
        let variants = status.json["variants"] as? [[String: Any]] ?? []
        #expect(variants.map { $0["name"] as? String } == ["large-t07", "mini"])
        for variant in variants {
            #expect(variant["succeeded"] as? Int == 10)
            #expect(variant["latency_p50_ms"] != nil && variant["latency_p95_ms"] != nil)
            #expect(variant["estimated_cost"] != nil)
        }
        let table = try await cli.run("status", "jobs/eval-sweep.yaml")
        #expect(table.stdout.contains("large-t07") && table.stdout.contains("p95 ms"))
    }
}
