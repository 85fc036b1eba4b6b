import FoundryAuth
import Foundation
import Synchronization

/// The run's targets, each with its own rate gate and adaptive limit, and the routing of
/// rows among them: the lowest tier with headroom first, within a tier in proportion to
/// the targets' quotas; a parked target gets nothing until its parking ends.
///
/// A 429 pauses only the target that answered it. A job without `targets:` has one lane,
/// and then parking it is exactly the old stop: no live target is left, and the run stops
/// with the reason (exit 3).
final class TargetPool: Sendable {
    /// One target of the run: where it sends, and its own pacing.
    final class Lane: Sendable {
        let spec: JobFile.Target
        let target: ServiceTarget
        let gate: RateGate
        let transport: HTTPTransport
        /// Its share of its tier: its quota, configured or from `limits:`.
        let weight: Double

        init(spec: JobFile.Target, target: ServiceTarget, gate: RateGate, transport: HTTPTransport, weight: Double = 1) {
            self.spec = spec
            self.target = target
            self.gate = gate
            self.transport = transport
            self.weight = max(weight, 1e-9)
        }

        var name: String { spec.name }

        /// `row` as this target is sent it: its deployment, and the body's `model` with it.
        func routed(_ row: ClaimedRow) -> ClaimedRow {
            let deployment = spec.deployment(for: row.deployment)
            guard deployment != row.deployment else { return row }
            var routed = row
            routed.deployment = deployment
            routed.body = Self.body(row.body, model: row.deployment, as: deployment)
            return routed
        }

        /// A stored body whose `model` is `model`, with `deployment` in its place.
        ///
        /// Simple lines are built with "model" first: swap that prefix on the hot path, and
        /// parse only a Batch API body that put it elsewhere.
        static func body(_ body: String, model: String, as deployment: String) -> String {
            guard deployment != model else { return body }
            let prefix = #"{"model":"# + JSONValue.string(model).jsonText
            if body.hasPrefix(prefix) {
                return #"{"model":"# + JSONValue.string(deployment).jsonText + body.dropFirst(prefix.count)
            }
            if let value = try? JSONParser.parse(body), case .object = value {
                return value.setting("model", to: .string(deployment)).jsonText
            }
            return body
        }
    }

    /// Why a target gets no rows, and until when (nil: for the rest of the run).
    struct Parking: Sendable {
        var until: Date?
        var reason: FatalCondition
    }

    struct State: Sendable {
        var parked: [String: Parking] = [:]
        /// Rows sent to each target in this run, over its weight: the proportional share.
        var share: [String: Double] = [:]
        /// Tries in a row that got no answer (timeouts, refused or dropped connections).
        var silent: [String: Int] = [:]
    }

    /// After this many tries in a row without an answer, a target goes last in its tier
    /// until it answers again: a stalled or unreachable deployment must not hold rows
    /// while another can serve them.
    static let silenceLimit = 3

    let lanes: [Lane]
    /// Whether the job names its `targets:`: output lines and the log then name them.
    let isPooled: Bool
    let state = Mutex(State())

    init(lanes: [Lane], isPooled: Bool) {
        self.lanes = lanes
        self.isPooled = isPooled
    }

    /// The lanes of a session's targets, paced by `limits` where a target sets no pacing.
    convenience init(service: ServiceSession, limits: JobFile.Limits) {
        self.init(
            lanes: service.targets.map { connected in
                let spec = connected.spec
                let gate = RateGate(
                    concurrency: limits.concurrency, requestsPerMinute: spec.requestsPerMinute ?? limits.requestsPerMinute,
                    tokensPerMinute: spec.tokensPerMinute ?? limits.tokensPerMinute
                )
                let transport = HTTPTransport(clients: service.rowClients, target: connected.target, timeout: limits.timeout)
                return Lane(spec: spec, target: connected.target, gate: gate, transport: transport, weight: spec.weight(limits: limits))
            },
            isPooled: service.isPooled
        )
    }

    /// The live lanes that serve `model`, in the order they are offered a row: by tier;
    /// within it, a target that keeps giving no answer, or `avoid` (where the row's last
    /// try failed), last; then the one furthest behind its share.
    func candidates(for model: String, avoid: String? = nil, now: Date) -> [Lane] {
        state.withLock { state in
            var live: [Lane] = []
            for lane in lanes where lane.spec.serves(model) {
                if let parking = state.parked[lane.name] {
                    guard let until = parking.until, until <= now else { continue }
                    // Back from a timed parking: it starts level with the others, not
                    // far behind, or it would take every row of its tier for a while.
                    state.parked[lane.name] = nil
                    let others = lanes.filter { $0.name != lane.name && $0.spec.priority == lane.spec.priority }
                    state.share[lane.name] = others.compactMap { state.share[$0.name] }.min() ?? 0
                }
                live.append(lane)
            }
            func demoted(_ lane: Lane) -> Bool { lane.name == avoid || state.silent[lane.name, default: 0] >= Self.silenceLimit }
            return live.sorted { a, b in
                if a.spec.priority != b.spec.priority { return a.spec.priority < b.spec.priority }
                if demoted(a) != demoted(b) { return !demoted(a) }
                return state.share[a.name, default: 0] < state.share[b.name, default: 0]
            }
        }
    }

    /// Waits for a live target serving `model` with room for a request estimated at
    /// `tokens`, and enters its gate; the caller leaves that lane's gate.
    ///
    /// - Parameter avoid: the target of the row's last try, tried last when it failed there.
    /// - Throws: ``FatalCondition`` when no live target serves `model` (exit 3, the rows
    ///   stay pending); `CancellationError` when the run stops.
    func enter(model: String, tokens: Int, avoid: String? = nil) async throws -> Lane {
        while true {
            let live = candidates(for: model, avoid: avoid, now: Date())
            guard !live.isEmpty else { throw noLiveTarget(for: model) }
            var soonest: TimeInterval = 0.2
            for lane in live {
                // The share is taken before the gate is asked, so workers choosing at the
                // same moment spread over the targets instead of all picking the same one.
                guard reserveShare(lane) else { continue }
                let wait = try await lane.gate.tryEnter(tokens: tokens)
                if wait <= 0 { return lane }
                state.withLock { $0.share[lane.name, default: 0] -= 1 / lane.weight }
                soonest = min(soonest, wait)
            }
            try await Task.sleep(for: .milliseconds(max(1, Int(soonest * 1000))))
        }
    }

    /// Takes one row of `lane`'s share, unless it was parked meanwhile.
    func reserveShare(_ lane: Lane) -> Bool {
        state.withLock { state in
            if let parking = state.parked[lane.name], parking.until.map({ $0 > Date() }) ?? true { return false }
            state.share[lane.name, default: 0] += 1 / lane.weight
            return true
        }
    }

    /// Records whether `lane` answered: tries in a row without an answer demote it.
    func noteAnswer(_ lane: Lane, answered: Bool) {
        state.withLock { state in state.silent[lane.name] = answered ? 0 : state.silent[lane.name, default: 0] + 1 }
    }

    /// Parks `lane`: until `until`, or for the rest of the run. - Returns: whether it was
    /// live until now (so the park is logged once, not by every try that was in flight).
    @discardableResult
    func park(_ lane: Lane, until: Date?, reason: FatalCondition) -> Bool {
        state.withLock { state in
            let now = Date()
            let wasLive = state.parked[lane.name].map { parking in parking.until.map { $0 <= now } ?? false } ?? true
            if wasLive { state.parked[lane.name] = Parking(until: until, reason: reason) }
            return wasLive
        }
    }

    /// The targets not parked now, in the job file's order.
    func liveNames(now: Date) -> [String] {
        let parked = self.parked
        return lanes.filter { lane in parked[lane.name].map { $0.until.map { $0 <= now } ?? false } ?? true }.map(\.name)
    }

    /// Where each target stands: parked until when and why, for the log and `status`.
    var parked: [String: Parking] { state.withLock { $0.parked } }

    /// The stop when no target is left for `model`: the one target's own reason, or each
    /// target's.
    func noLiveTarget(for model: String) -> FatalCondition {
        let parked = self.parked
        let serving = lanes.filter { $0.spec.serves(model) }
        if serving.count == 1, let only = parked[serving[0].name] { return only.reason }
        guard !serving.isEmpty else {
            return FatalCondition("no target serves model '\(model)'; add it to a target's models: in the job file")
        }
        let reasons = serving.map { lane in
            "  \(lane.name): \(parked[lane.name].map(Self.describe) ?? "live")"
        }
        return FatalCondition("no target is left for model '\(model)':\n" + reasons.joined(separator: "\n"))
    }

    static func describe(_ parking: Parking) -> String {
        let until = parking.until.map { " (parked until \(RowDecision.clockTime($0)))" } ?? ""
        let lines = parking.reason.message.split(separator: "\n", omittingEmptySubsequences: false)
        return ([String(lines.first ?? "") + until] + lines.dropFirst().map { "    " + $0 }).joined(separator: "\n")
    }

    /// Paces every target to its share of the quota while `runners` processes run the job.
    func share(among runners: Int, joining: Bool = false) async {
        for lane in lanes { await lane.gate.setShare(1 / Double(max(runners, 1)), startEmpty: joining) }
    }

    /// Lets every worker waiting at any gate go: the run is stopping.
    func close() async {
        for lane in lanes { await lane.gate.close() }
    }

    /// Token requests of the run's distinct token providers.
    var tokenRequests: Int {
        get async {
            var seen = Set<ObjectIdentifier>()
            var total = 0
            for lane in lanes {
                guard case .bearer(let provider) = lane.target.authorization, seen.insert(ObjectIdentifier(provider)).inserted else { continue }
                total += await provider.requests
            }
            return total
        }
    }
}
