import Foundation
import FoundryEmulator
import Yams

/// Walks a composed YAML document into a `JobFile`, naming file, line and key on every error.
///
/// Codable decoding would silently ignore unknown keys and report type errors as coding
/// paths; a typo in `limits.concurency` must instead stop the run before anything is sent.
struct YAMLReader {
    let file: String

    static let topKeys: Set<String> = [
        "name", "input", "output", "errors", "state", "metrics_file", "endpoint", "deployment", "api", "api_version",
        "auth", "request", "limits", "variants", "prices", "emulator", "targets", "engine", "batch",
    ]
    static let batchKeys: Set<String> = [
        "deployment", "completion_window", "max_requests_per_file", "max_bytes_per_file", "poll_interval", "finish_by",
    ]
    static let targetKeys: Set<String> = [
        "name", "endpoint", "deployment", "auth", "api_key_env", "api_version", "tokens_per_minute", "requests_per_minute",
        "priority", "models", "emulator",
    ]
    /// The highest `priority` a target may have: tiers are few; a larger number is a typo.
    static let maxPriority = 1000
    static let limitKeys: Set<String> = [
        "concurrency", "requests_per_minute", "tokens_per_minute", "max_attempts", "timeout", "max_retry_wait",
        "max_tokens_total", "max_output_retries", "truncated",
    ]
    static let variantKeys: Set<String> = ["name", "deployment", "request"]
    static let priceKeys: Set<String> = ["prompt_per_1k", "completion_per_1k", "batch_factor"]
    static let emulatorKeys = EmulatorSettings.keys

    func error(_ node: Node?, _ key: String?, _ message: String) -> JobFileError {
        JobFileError(file: file, line: node?.mark?.line, key: key, message: message)
    }

    func job(yaml: String, path: String) throws(JobFileError) -> JobFile {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let yamlError as YamlError {
            throw JobFileError(file: file, message: "not valid YAML: \(Self.describe(yamlError))")
        } catch {
            throw JobFileError(file: file, message: "not valid YAML")
        }
        guard let root, case .mapping(let top) = root else {
            throw self.error(root, nil, "a job file is a mapping of keys (name:, input:, endpoint: ...)")
        }
        let fields = try mapping(top, allowed: Self.topKeys, prefix: "")

        guard let nameNode = fields["name"] else { throw error(root, "name", "missing required key") }
        let name = try string(nameNode, "name")
        guard Self.isPlainName(name) else {
            throw error(nameNode, "name", "must match [A-Za-z0-9._-]+, got '\(name)'")
        }
        guard let inputNode = fields["input"] else { throw error(root, "input", "missing required key") }
        let inputs = try stringOrList(inputNode, "input")
        guard !inputs.isEmpty else { throw error(inputNode, "input", "needs at least one path") }
        // With targets:, each target may name its own endpoint instead.
        if fields["endpoint"] == nil, fields["targets"] == nil { throw error(root, "endpoint", "missing required key") }
        let endpoint = try fields["endpoint"].map { node throws(JobFileError) in try self.endpoint(node, "endpoint") }

        var job = JobFile(path: path, name: name, inputs: inputs, endpoint: endpoint)
        job.output = try fields["output"].map { node throws(JobFileError) in try string(node, "output") }
        job.errors = try fields["errors"].map { node throws(JobFileError) in try string(node, "errors") }
        job.state = try fields["state"].map { node throws(JobFileError) in try string(node, "state") }
        job.metricsFile = try fields["metrics_file"].map { node throws(JobFileError) in try string(node, "metrics_file") }
        job.deployment = try fields["deployment"].map { node throws(JobFileError) in try string(node, "deployment") }
        job.apiVersion = try fields["api_version"].map { node throws(JobFileError) in try string(node, "api_version") }
        if let node = fields["api"] {
            job.api = try enumValue(node, "api", JobFile.API.self)
        }
        if let node = fields["auth"] {
            job.auth = try enumValue(node, "auth", JobFile.AuthKind.self)
        }
        if let node = fields["request"] {
            job.request = try jsonObject(node, "request")
            try checkRequest(job.request, node, "request")
        }
        if let node = fields["limits"] { job.limits = try limits(node) }
        if let node = fields["variants"] { job.variants = try variants(node) }
        if let node = fields["prices"] { job.prices = try prices(node) }
        if let node = fields["emulator"] { job.emulator = try emulatorSettings(node, "emulator") }
        if let node = fields["targets"] { job.targets = try targets(node, job: job) }
        if let node = fields["engine"] { job.engine = try enumValue(node, "engine", JobFile.Engine.self) }
        if let node = fields["batch"] { job.batch = try batch(node) }
        if job.engine == .auto, job.batch.finishBy == nil {
            throw error(fields["engine"], "batch.finish_by", "engine: auto needs batch.finish_by, the local time (HH:MM) by which every row must be done")
        }
        // One state file for all days, but a results file per day: every day's file would
        // hold every earlier day's rows too.
        let stateHasDate = job.state?.contains("{date}") ?? false
        for (key, path) in [("output", job.output), ("errors", job.errors)] where path?.contains("{date}") == true && !stateHasDate {
            throw error(fields[key], key, "has {date} but state: has not, so each day's file would hold every day's rows; put {date} in state: too (state: .foundry-batch/{name}-{date}.sqlite)")
        }
        return job
    }

    static func describe(_ error: YamlError) -> String {
        let text = "\(error)"
        return text.split(separator: "\n").first.map(String.init) ?? text
    }

    func mapping(_ mapping: Node.Mapping, allowed: Set<String>, prefix: String) throws(JobFileError) -> [String: Node] {
        var fields: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else { throw error(keyNode, prefix.isEmpty ? nil : String(prefix.dropLast()), "keys must be plain strings") }
            guard allowed.contains(key) else {
                let hint = Self.closest(to: key, in: allowed).map { " (did you mean \(prefix)\($0)?)" } ?? ""
                throw error(keyNode, prefix + key, "unknown key\(hint); known keys: \(allowed.sorted().joined(separator: ", "))")
            }
            guard fields[key] == nil else { throw error(keyNode, prefix + key, "given twice") }
            fields[key] = value
        }
        return fields
    }

    static func closest(to key: String, in candidates: Set<String>) -> String? {
        var best: (name: String, distance: Int)?
        for candidate in candidates.sorted() {
            let distance = editDistance(key, candidate)
            if distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
        }
        guard let best, best.distance <= max(2, key.count / 3) else { return nil }
        return best.name
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }

    func tagName(_ node: Node) -> Tag.Name {
        Tag.Name(rawValue: node.tag.rawValue)
    }

    func scalar(_ node: Node, _ key: String, _ expected: String) throws(JobFileError) -> Node.Scalar {
        guard case .scalar(let scalar) = node else { throw error(node, key, "expected \(expected), got a \(kind(node))") }
        return scalar
    }

    func kind(_ node: Node) -> String {
        switch node {
        case .scalar: "value"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }

    func string(_ node: Node, _ key: String) throws(JobFileError) -> String {
        let value = try scalar(node, key, "a string")
        if tagName(node) == .null { throw error(node, key, "expected a string, got null") }
        return value.string
    }

    func stringOrList(_ node: Node, _ key: String) throws(JobFileError) -> [String] {
        if case .sequence(let items) = node {
            var result: [String] = []
            for (index, item) in items.enumerated() { result.append(try string(item, "\(key)[\(index)]")) }
            return result
        }
        return [try string(node, key)]
    }

    func enumValue<E: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, _ type: E.Type) throws(JobFileError) -> E
    where E.RawValue == String {
        let text = try string(node, key)
        guard let value = E(rawValue: text) else {
            throw error(node, key, "must be one of \(E.allCases.map(\.rawValue).joined(separator: " | ")), got '\(text)'")
        }
        return value
    }

    func int(_ node: Node, _ key: String, min: Int = 0) throws(JobFileError) -> Int {
        let value = try scalar(node, key, "a whole number")
        guard tagName(node) == .int, let number = Int(value.string.replacingOccurrences(of: "_", with: "")) else {
            throw error(node, key, "expected a whole number, got '\(value.string)'")
        }
        guard number >= min else { throw error(node, key, "must be at least \(min), got \(number)") }
        return number
    }

    func int(_ node: Node, _ key: String, min: Int = 0, max: Int) throws(JobFileError) -> Int {
        let number = try int(node, key, min: min)
        guard number <= max else { throw error(node, key, "must be at most \(max), got \(number)") }
        return number
    }

    /// A finite number in `min...max`: `1e300` or `.inf` would overflow every duration built from it.
    func double(_ node: Node, _ key: String, min: Double = 0, max: Double) throws(JobFileError) -> Double {
        let value = try scalar(node, key, "a number")
        guard tagName(node) == .int || tagName(node) == .float, let number = Double(value.string.replacingOccurrences(of: "_", with: "")),
            number.isFinite
        else {
            throw error(node, key, "expected a finite number, got '\(value.string)'")
        }
        guard number >= min else { throw error(node, key, "must be at least \(min), got \(value.string)") }
        guard number <= max else { throw error(node, key, "must be at most \(Self.plain(max)), got \(value.string)") }
        return number
    }

    static func plain(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
    }

    func limits(_ node: Node) throws(JobFileError) -> JobFile.Limits {
        guard case .mapping(let map) = node else { throw error(node, "limits", "expected a mapping, got a \(kind(node))") }
        let fields = try mapping(map, allowed: Self.limitKeys, prefix: "limits.")
        var limits = JobFile.Limits()
        typealias Bound = JobFile.Limits
        if let n = fields["concurrency"] { limits.concurrency = try int(n, "limits.concurrency", min: 1, max: Bound.maxConcurrency) }
        if let n = fields["requests_per_minute"] { limits.requestsPerMinute = try int(n, "limits.requests_per_minute", min: 1, max: Bound.maxPerMinute) }
        if let n = fields["tokens_per_minute"] { limits.tokensPerMinute = try int(n, "limits.tokens_per_minute", min: 1, max: Bound.maxPerMinute) }
        if let n = fields["max_attempts"] { limits.maxAttempts = try int(n, "limits.max_attempts", min: 1, max: Bound.maxAttempts) }
        if let n = fields["timeout"] { limits.timeout = try double(n, "limits.timeout", min: 0.001, max: Bound.maxTimeout) }
        if let n = fields["max_retry_wait"] { limits.maxRetryWait = try double(n, "limits.max_retry_wait", max: Bound.maxRetryWait) }
        if let n = fields["max_tokens_total"] { limits.maxTokensTotal = try int(n, "limits.max_tokens_total", min: 1) }
        if let n = fields["max_output_retries"] { limits.maxOutputRetries = try int(n, "limits.max_output_retries", min: 0, max: 100) }
        if let n = fields["truncated"] { limits.truncated = try enumValue(n, "limits.truncated", JobFile.Limits.TruncatedAnswers.self) }
        return limits
    }

    func variants(_ node: Node) throws(JobFileError) -> [JobFile.Variant] {
        guard case .sequence(let items) = node else { throw error(node, "variants", "expected a list, got a \(kind(node))") }
        var result: [JobFile.Variant] = []
        for (index, item) in items.enumerated() {
            let key = "variants[\(index)]"
            guard case .mapping(let map) = item else { throw error(item, key, "expected a mapping with name:, got a \(kind(item))") }
            let fields = try mapping(map, allowed: Self.variantKeys, prefix: key + ".")
            guard let nameNode = fields["name"] else { throw error(item, key + ".name", "missing required key") }
            let name = try string(nameNode, key + ".name")
            guard !name.isEmpty, !name.contains("#"), !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw error(nameNode, key + ".name", "must be non-empty, without '#' or control characters")
            }
            guard !result.contains(where: { $0.name == name }) else { throw error(nameNode, key + ".name", "'\(name)' is used twice") }
            let deployment = try fields["deployment"].map { n throws(JobFileError) in try string(n, key + ".deployment") }
            let request = try fields["request"].map { n throws(JobFileError) in try jsonObject(n, key + ".request") } ?? []
            if let node = fields["request"] { try checkRequest(request, node, key + ".request") }
            result.append(JobFile.Variant(name: name, deployment: deployment, request: request))
        }
        return result
    }

    func prices(_ node: Node) throws(JobFileError) -> JobFile.Prices {
        guard case .mapping(let map) = node else { throw error(node, "prices", "expected a mapping, got a \(kind(node))") }
        let fields = try mapping(map, allowed: Self.priceKeys, prefix: "prices.")
        var prices = JobFile.Prices()
        if let n = fields["prompt_per_1k"] { prices.promptPer1K = try double(n, "prices.prompt_per_1k", max: 1e6) }
        if let n = fields["completion_per_1k"] { prices.completionPer1K = try double(n, "prices.completion_per_1k", max: 1e6) }
        if let n = fields["batch_factor"] { prices.batchFactor = try double(n, "prices.batch_factor", max: 10) }
        return prices
    }

    func batch(_ node: Node) throws(JobFileError) -> JobFile.Batch {
        guard case .mapping(let map) = node else { throw error(node, "batch", "expected a mapping, got a \(kind(node))") }
        let fields = try mapping(map, allowed: Self.batchKeys, prefix: "batch.")
        var batch = JobFile.Batch()
        typealias Bound = JobFile.Batch
        batch.deployment = try fields["deployment"].map { n throws(JobFileError) in try string(n, "batch.deployment") }
        if let n = fields["completion_window"] {
            let window = try string(n, "batch.completion_window")
            guard window.hasSuffix("h"), let hours = Int(window.dropLast()), (24...336).contains(hours) else {
                throw error(n, "batch.completion_window", "must be hours from 24h to 336h (the services accept 24h), got '\(window)'")
            }
            batch.completionWindow = window
        }
        if let n = fields["max_requests_per_file"] { batch.maxRequestsPerFile = try int(n, "batch.max_requests_per_file", min: 1, max: Bound.maxRequestsLimit) }
        if let n = fields["max_bytes_per_file"] { batch.maxBytesPerFile = try int(n, "batch.max_bytes_per_file", min: 1024, max: Bound.maxBytesLimit) }
        if let n = fields["poll_interval"] { batch.pollInterval = try double(n, "batch.poll_interval", min: 0.01, max: 86_400) }
        if let n = fields["finish_by"] {
            let text = try string(n, "batch.finish_by")
            guard let time = JobFile.TimeOfDay(text) else {
                throw error(n, "batch.finish_by", "must be a local time of day HH:MM or HH:MM:SS, got '\(text)'")
            }
            batch.finishBy = time
        }
        return batch
    }

    func endpoint(_ node: Node, _ key: String) throws(JobFileError) -> JobFile.Endpoint {
        let text = try string(node, key)
        if text == "emulator" { return .emulator }
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http", url.host != nil else {
            throw error(node, key, "must be \"emulator\" or an http(s) URL, got '\(text)'")
        }
        return .url(text.hasSuffix("/") ? String(text.dropLast()) : text)
    }

    /// `targets:`: each entry's keys, defaults from the job's own endpoint, auth and api
    /// version, unique names, and every model the job file names served by some target.
    func targets(_ node: Node, job: JobFile) throws(JobFileError) -> [JobFile.Target] {
        guard case .sequence(let items) = node, !items.isEmpty else {
            throw error(node, "targets", "expected a list of targets (name:, endpoint:, deployment: ...)")
        }
        var result: [JobFile.Target] = []
        for (index, item) in items.enumerated() {
            let key = "targets[\(index)]"
            guard case .mapping(let map) = item else { throw error(item, key, "expected a mapping with name:, got a \(kind(item))") }
            let fields = try mapping(map, allowed: Self.targetKeys, prefix: key + ".")
            guard let nameNode = fields["name"] else { throw error(item, key + ".name", "missing required key") }
            let name = try string(nameNode, key + ".name")
            guard Self.isPlainName(name) else { throw error(nameNode, key + ".name", "must match [A-Za-z0-9._-]+, got '\(name)'") }
            guard !result.contains(where: { $0.name == name }) else { throw error(nameNode, key + ".name", "'\(name)' is used twice") }
            let endpoint: JobFile.Endpoint
            if let node = fields["endpoint"] {
                endpoint = try self.endpoint(node, key + ".endpoint")
            } else if let shared = job.endpoint {
                endpoint = shared
            } else {
                throw error(item, key + ".endpoint", "missing required key (the job has no endpoint: of its own)")
            }
            var target = JobFile.Target(name: name, endpoint: endpoint, auth: job.auth, apiVersion: job.apiVersion, emulator: job.emulator)
            target.line = item.mark?.line
            target.deployment = try fields["deployment"].map { n throws(JobFileError) in try string(n, key + ".deployment") }
            if let n = fields["auth"] { target.auth = try enumValue(n, key + ".auth", JobFile.AuthKind.self) }
            if let n = fields["api_key_env"] {
                let variable = try string(n, key + ".api_key_env")
                guard !variable.isEmpty, variable.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw error(n, key + ".api_key_env", "must name an environment variable ([A-Za-z0-9_]+), got '\(variable)'")
                }
                target.apiKeyEnv = variable
            }
            if let n = fields["api_version"] { target.apiVersion = try string(n, key + ".api_version") }
            typealias Bound = JobFile.Limits
            if let n = fields["tokens_per_minute"] { target.tokensPerMinute = try int(n, key + ".tokens_per_minute", min: 1, max: Bound.maxPerMinute) }
            if let n = fields["requests_per_minute"] { target.requestsPerMinute = try int(n, key + ".requests_per_minute", min: 1, max: Bound.maxPerMinute) }
            if let n = fields["priority"] { target.priority = try int(n, key + ".priority", min: 0, max: Self.maxPriority) }
            if let n = fields["models"] {
                let models = try stringOrList(n, key + ".models")
                guard !models.isEmpty else { throw error(n, key + ".models", "needs at least one model (leave it out to serve every model)") }
                target.models = models
            }
            if let n = fields["emulator"] { target.emulator = try emulatorSettings(n, key + ".emulator", base: job.emulator) }
            // A deployment of its own is one model's: without models:, the job's model only,
            // so an embeddings line never goes to a chat deployment under another name.
            if target.deployment != nil, target.models == nil {
                guard let model = job.deployment else {
                    throw error(item, key + ".models", "a target with its own deployment: serves one model: name it in models: (the job has no deployment:)")
                }
                target.models = [model]
            }
            result.append(target)
        }
        for model in job.knownModels where !result.contains(where: { $0.serves(model) }) {
            throw error(node, "targets", "no target serves model '\(model)' (deployment: or a variant's); add it to a target's models:")
        }
        return result
    }

    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    func emulatorSettings(_ node: Node, _ prefix: String, base: JobFile.EmulatorSettings = .init()) throws(JobFileError) -> JobFile.EmulatorSettings {
        guard case .mapping(let map) = node else { throw error(node, prefix, "expected a mapping, got a \(kind(node))") }
        let fields = try mapping(map, allowed: Self.emulatorKeys, prefix: prefix + ".")
        var settings = base
        for knob in EmulatorSettings.knobs {
            guard let n = fields[knob.key] else { continue }
            let key = prefix + "." + knob.key
            let value =
                knob.wholeNumber
                ? Double(try int(n, key, min: Int(knob.range.lowerBound), max: Int(knob.range.upperBound)))
                : try double(n, key, min: knob.range.lowerBound, max: knob.range.upperBound)
            knob.set(value, in: &settings)
        }
        if let n = fields["content_filter_phrase"] { settings.contentFilterPhrase = try string(n, prefix + ".content_filter_phrase") }
        if let n = fields["seed"] { settings.seed = UInt64(try int(n, prefix + ".seed")) }
        return settings
    }

    /// A `request:` block must not ask for what a batch cannot use (a stream) or promise
    /// an absurd answer length.
    func checkRequest(_ pairs: [(String, JSONValue)], _ node: Node, _ key: String) throws(JobFileError) {
        if let problem = RequestBuilder.problem(in: .object(pairs)) { throw error(node, key, problem) }
    }

    /// Converts a YAML mapping to JSON pairs, typing scalars as YAML resolved them.
    func jsonObject(_ node: Node, _ key: String) throws(JobFileError) -> [(String, JSONValue)] {
        guard case .object(let pairs) = try json(node, key) else {
            throw error(node, key, "expected a mapping, got a \(kind(node))")
        }
        return pairs
    }

    func json(_ node: Node, _ key: String) throws(JobFileError) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch tagName(node) {
            case .null: return .null
            case .bool: return .bool(node.bool ?? false)
            case .int:
                guard let value = node.int else { throw error(node, key, "number out of range") }
                return .int(value)
            case .float:
                guard let value = node.float, value.isFinite else { throw error(node, key, "numbers must be finite") }
                return .double(value)
            default: return .string(scalar.string)
            }
        case .sequence(let items):
            var values: [JSONValue] = []
            for (index, item) in items.enumerated() { values.append(try json(item, "\(key)[\(index)]")) }
            return .array(values)
        case .mapping(let map):
            var pairs: [(String, JSONValue)] = []
            for (keyNode, value) in map {
                guard let name = keyNode.scalar?.string else { throw error(keyNode, key, "keys must be plain strings") }
                pairs.append((name, try json(value, "\(key).\(name)")))
            }
            return .object(pairs)
        case .alias:
            throw error(node, key, "YAML aliases are not supported here")
        }
    }
}
