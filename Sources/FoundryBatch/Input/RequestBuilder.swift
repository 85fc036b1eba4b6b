import Crypto
import FoundryAuth

/// Turns an input line into the request body of each variant: the one place that decides
/// how `prompt`, `messages`, `input`, the job's `request` and a variant's overrides combine.
struct RequestBuilder {
    let job: JobFile
    /// The job's `request` with each variant's overrides, merged once rather than per line.
    let requests: [String: JSONValue]

    init(job: JobFile) {
        self.job = job
        var requests: [String: JSONValue] = [:]
        for arm in job.variants.isEmpty ? [JobFile.Variant(name: "", deployment: nil, request: [])] : job.variants {
            requests[arm.name] = JSONValue.object(job.request).merging(arm.request)
        }
        self.requests = requests
    }

    struct Built {
        var api: JobFile.API
        var deployment: String
        var body: JSONValue
    }

    /// The variants to expand each line into: the job's, or one unnamed arm.
    var arms: [JobFile.Variant] {
        job.variants.isEmpty ? [JobFile.Variant(name: "", deployment: nil, request: [])] : job.variants
    }

    /// The largest answer cap a request may ask for: no model comes near it, and estimates
    /// and budgets built from a larger one would overflow.
    static let maxTokenCap = 100_000_000
    static let tokenCapKeys = ["max_tokens", "max_completion_tokens", "max_output_tokens"]

    /// What is wrong with a request body for a batch, or nil.
    ///
    /// `stream: true` is refused: a batch stores whole answers, and a stream's events would
    /// be kept as text with no usage. A token cap must be a whole number in `0...maxTokenCap`.
    static func problem(in body: JSONValue) -> String? {
        if case .bool(true) = body["stream"] {
            return "\"stream\": true is not supported: a batch keeps whole answers; remove it (or set it to false)"
        }
        for key in tokenCapKeys {
            guard let value = body[key], case .number(let text) = value else { continue }
            guard let number = Double(text), number.rounded() == number, let cap = value.intValue, (0...maxTokenCap).contains(cap) else {
                return "\"\(key)\": \(text) is not a whole number from 0 to \(maxTokenCap)"
            }
        }
        return nil
    }

    func build(_ line: InputLine, variant: JobFile.Variant) -> Result<Built, LineProblem> {
        let built = assemble(line, variant: variant)
        if case .success(let request) = built {
            let label = line.isBatch ? "custom_id" : "id"
            if let problem = Self.problem(in: request.body) { return .failure(LineProblem("\(label) '\(line.id)': \(problem)")) }
            if !InputLine.isPrintable(request.deployment) {
                return .failure(LineProblem("\(label) '\(line.id)': the model name holds control characters"))
            }
        }
        return built
    }

    func assemble(_ line: InputLine, variant: JobFile.Variant) -> Result<Built, LineProblem> {
        switch line.payload {
        case .batch(let api, let body):
            guard let deployment = variant.deployment ?? body["model"]?.stringValue ?? job.deployment else {
                return .failure(LineProblem("custom_id '\(line.id)': no model: set body.model or the job's deployment:"))
            }
            let merged = body.merging(variant.request).setting("model", to: .string(deployment))
            return .success(Built(api: api, deployment: deployment, body: merged))
        case .prompt, .messages, .input:
            guard let deployment = variant.deployment ?? job.deployment else {
                return .failure(LineProblem("id '\(line.id)': no deployment: set deployment: in the job file (or in each variant)"))
            }
            var request = requests[variant.name] ?? JSONValue.object(job.request).merging(variant.request)
            let system = request["system"]?.stringValue
            request = request.removing("system")
            var pairs: [(String, JSONValue)] = [("model", .string(deployment))]
            switch job.api {
            case .chat:
                guard let messages = chatMessages(line.payload, system: system) else {
                    return .failure(LineProblem("id '\(line.id)': \"input\" for a chat job must be a string"))
                }
                pairs.append(("messages", messages))
            case .responses:
                pairs.append(("input", responsesInput(line.payload)))
                if let system { pairs.append(("instructions", .string(system))) }
                if let maxTokens = request["max_tokens"] {
                    request = request.removing("max_tokens").setting("max_output_tokens", to: maxTokens)
                }
            case .embeddings:
                guard let input = embeddingsInput(line.payload) else {
                    return .failure(LineProblem("id '\(line.id)': an embeddings job takes \"input\" or \"prompt\", not \"messages\""))
                }
                pairs.append(("input", input))
                request = request.removing("max_tokens")
            }
            return .success(Built(api: job.api, deployment: deployment, body: JSONValue.object(pairs).merging(request.objectPairs ?? [])))
        }
    }

    func chatMessages(_ payload: InputLine.Payload, system: String?) -> JSONValue? {
        var messages: [JSONValue] = []
        switch payload {
        case .prompt(let text), .input(.string(let text)):
            messages = [.object([("role", .string("user")), ("content", .string(text))])]
        case .messages(let value):
            messages = value.arrayValue ?? []
        default:
            return nil
        }
        if let system, !["system", "developer"].contains(messages.first?["role"]?.stringValue ?? "") {
            messages.insert(.object([("role", .string("system")), ("content", .string(system))]), at: 0)
        }
        return .array(messages)
    }

    func responsesInput(_ payload: InputLine.Payload) -> JSONValue {
        switch payload {
        case .prompt(let text): .string(text)
        case .messages(let value), .input(let value): value
        case .batch(_, let body): body["input"] ?? .null
        }
    }

    func embeddingsInput(_ payload: InputLine.Payload) -> JSONValue? {
        switch payload {
        case .prompt(let text): .string(text)
        case .input(let value): value
        default: nil
        }
    }

    /// Prompt characters / 4 + the answer's token cap: what Azure reserves against TPM.
    static func estimatedTokens(_ body: JSONValue) -> (prompt: Int, total: Int) {
        estimatedTokens(characters: promptCharacters(body), cap: tokenCap(body))
    }

    static func estimatedTokens(characters: Int, cap: Int) -> (prompt: Int, total: Int) {
        let prompt = characters / 4 + (characters % 4 == 0 ? 0 : 1)
        return (prompt, Bounded.add(prompt, min(max(cap, 0), maxTokenCap)))
    }

    /// The UTF-8 length of the text the service reads as the prompt.
    static func promptCharacters(_ body: JSONValue) -> Int {
        var characters = 0
        for message in body["messages"]?.arrayValue ?? [] {
            characters += message["content"].map(textLength) ?? 0
        }
        for key in ["input", "instructions", "prompt"] {
            if let value = body[key] { characters += textLength(value) }
        }
        return characters
    }

    static func tokenCap(_ body: JSONValue) -> Int {
        (body["max_tokens"] ?? body["max_completion_tokens"] ?? body["max_output_tokens"])?.intValue ?? 0
    }

    static func textLength(_ value: JSONValue) -> Int {
        switch value {
        case .string(let text): text.utf8.count
        case .array(let items): items.reduce(0) { $0 + textLength($1) }
        case .object(let pairs): pairs.reduce(0) { $0 + textLength($1.1) }
        default: 0
        }
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    /// A digest of the line as written (line end and BOM aside): reloading the same file
    /// matches it, and an edited line does not.
    static func contentHash(_ line: ArraySlice<UInt8>) -> String {
        var hex = [UInt8]()
        hex.reserveCapacity(32)
        for byte in SHA256.hash(data: line).prefix(16) {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}
