import Foundation
import Testing
@testable import FoundryBatch

/// What a run's summary says when its state database went away with it.
struct RunSummaryTests {
    func summary(stop: StopReason?, countsKnown: Bool) -> RunSummary {
        let counts = QueueCounts()
        var summary = RunSummary(
            job: "nightly", counts: counts, counters: RunCounters(), tokenRequests: 1, elapsed: 2,
            export: ExportReport(output: "out.jsonl", errors: "out.errors.jsonl"), stop: stop,
            prices: JobFile.Prices(promptPer1K: 1, completionPer1K: 1)
        )
        summary.countsKnown = countsKnown
        return summary
    }

    @Test func countsThatCouldNotBeReadAreNullNotZeros() {
        let unknown = summary(stop: .fatal(FatalCondition("the state database is out of reach")), countsKnown: false)
        for key in ["total", "succeeded", "failed", "pending", "prompt_tokens", "completion_tokens"] {
            #expect(unknown.json[key] == .null, "\(key)")
        }
        #expect(unknown.json["estimated_cost"] == nil, "no cost from counts it does not have")
        #expect(unknown.text.contains("could not be counted") && !unknown.text.contains("0 rows"), "\(unknown.text)")
        let known = summary(stop: nil, countsKnown: true)
        #expect(known.json["total"] == .int(0) && known.text.contains("0 rows"))
    }

    @Test func anInterruptThatCouldNotReleaseItsRowsSaysSoAndExits130() {
        let held = summary(stop: .interruptedHolding("interrupted while the state database was out of reach"), countsKnown: false)
        #expect(held.exitStatus == .interrupted)
        #expect(held.text.contains("out of reach") && !held.text.contains("were released"), "\(held.text)")
    }
}
