import Foundation

/// A strict reader of Prometheus' text exposition format (0.0.4), for tests of the metrics
/// file: what node_exporter's textfile collector would refuse, it refuses too.
///
/// Checked: metric and label names, quoted and escaped label values, numbers, HELP and TYPE
/// lines (TYPE at most once per family and before its first sample), a family's samples
/// together, no sample twice, and a line feed at the end.
public struct PrometheusText: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct Problem: Error, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    public private(set) var samples: [Sample] = []
    public private(set) var types: [String: String] = [:]
    public private(set) var helps: [String: String] = [:]

    public init(parsing text: String) throws(Problem) {
        guard text.isEmpty || text.hasSuffix("\n") else { throw Problem(line: 0, message: "the text does not end with a line feed") }
        var finished: Set<String> = []
        var current: String?
        var seen: Set<String> = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let number = index + 1
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
                guard parts.count >= 3, parts[0] == "#", parts[1] == "HELP" || parts[1] == "TYPE" else { continue }
                let name = parts[2]
                guard Self.isMetricName(name) else { throw Problem(line: number, message: "bad metric name '\(name)'") }
                if parts[1] == "TYPE" {
                    let type = parts.count > 3 ? parts[3] : ""
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(type) else {
                        throw Problem(line: number, message: "bad type '\(type)'")
                    }
                    guard types[name] == nil else { throw Problem(line: number, message: "second TYPE for \(name)") }
                    guard !samples.contains(where: { $0.name == name }) else { throw Problem(line: number, message: "TYPE of \(name) after its samples") }
                    types[name] = type
                } else {
                    guard helps[name] == nil else { throw Problem(line: number, message: "second HELP for \(name)") }
                    helps[name] = parts.count > 3 ? parts[3] : ""
                }
                continue
            }
            let sample = try Self.sample(String(line), line: number)
            if sample.name != current {
                if let current { finished.insert(current) }
                guard !finished.contains(sample.name) else { throw Problem(line: number, message: "samples of \(sample.name) are not together") }
                current = sample.name
            }
            let key = sample.name + "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
            guard seen.insert(key).inserted else { throw Problem(line: number, message: "\(key) twice") }
            samples.append(sample)
        }
    }

    /// The value of the one sample of `name` whose labels include `labels`; nil when none.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }

    /// The samples of `name`.
    public func all(_ name: String) -> [Sample] { samples.filter { $0.name == name } }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" || first == ":" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" || $0 == ":" }
    }

    static func isLabelName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" }
    }

    static func sample(_ line: String, line number: Int) throws(Problem) -> Sample {
        var characters = Array(line)
        var at = 0
        func fail(_ message: String) -> Problem { Problem(line: number, message: "\(message): \(line)") }
        var name = ""
        while at < characters.count, characters[at] != "{", characters[at] != " " { name.append(characters[at]); at += 1 }
        guard isMetricName(name) else { throw fail("bad metric name '\(name)'") }
        var labels: [String: String] = [:]
        if at < characters.count, characters[at] == "{" {
            at += 1
            while at < characters.count, characters[at] != "}" {
                var label = ""
                while at < characters.count, characters[at] != "=" { label.append(characters[at]); at += 1 }
                guard isLabelName(label), at + 1 < characters.count, characters[at + 1] == "\"" else { throw fail("bad label '\(label)'") }
                at += 2
                var value = ""
                while true {
                    guard at < characters.count else { throw fail("unterminated label value") }
                    let character = characters[at]
                    if character == "\"" { break }
                    if character == "\\" {
                        guard at + 1 < characters.count else { throw fail("a backslash at the end") }
                        switch characters[at + 1] {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw fail("unknown escape \\\(characters[at + 1])")
                        }
                        at += 2
                        continue
                    }
                    value.append(character)
                    at += 1
                }
                at += 1
                guard labels.updateValue(value, forKey: label) == nil else { throw fail("label \(label) twice") }
                if at < characters.count, characters[at] == "," { at += 1 }
            }
            guard at < characters.count else { throw fail("unterminated labels") }
            at += 1
        }
        guard at < characters.count, characters[at] == " " else { throw fail("no value") }
        characters = Array(characters[(at + 1)...])
        let fields = String(characters).split(separator: " ")
        guard (1...2).contains(fields.count) else { throw fail("expected a value and at most a timestamp") }
        let text = String(fields[0])
        let value: Double
        switch text {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let number = Double(text), number.isFinite else { throw fail("bad value '\(text)'") }
            value = number
        }
        if fields.count == 2, Int64(fields[1]) == nil { throw fail("bad timestamp '\(fields[1])'") }
        return Sample(name: name, labels: labels, value: value)
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { (0x41...0x5A).contains(value) || (0x61...0x7A).contains(value) }
    fileprivate var isASCIIDigit: Bool { (0x30...0x39).contains(value) }
}
