import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A page read strictly as XML, for tests: anything not well formed is an error, and
/// what is well formed can be searched by element, class and id.
///
/// The report writes HTML that is also well-formed XML, so this is a real parser's
/// verdict, not a search for strings.
public struct MarkupTree: Sendable {
    /// One element: its name, attributes, and its content in order.
    public struct Element: Sendable {
        public var name: String
        public var attributes: [String: String]
        public var children: [Node] = []

        /// All the text inside, as a reader sees it (markup removed, entities decoded).
        public var text: String {
            children.map { node in
                switch node {
                case .text(let text): text
                case .element(let element): element.text
                }
            }.joined()
        }

        /// The child elements, in order.
        public var elements: [Element] {
            children.compactMap { if case .element(let element) = $0 { element } else { nil } }
        }

        /// Every element below this one (depth first) that `matches`.
        public func all(where matches: (Element) -> Bool) -> [Element] {
            elements.flatMap { (matches($0) ? [$0] : []) + $0.all(where: matches) }
        }

        public func all(_ name: String) -> [Element] { all { $0.name == name } }

        /// The first element below with this `id`.
        public func byID(_ id: String) -> Element? { all { $0.attributes["id"] == id }.first }

        public func hasClass(_ name: String) -> Bool {
            (attributes["class"] ?? "").split(separator: " ").contains { $0 == name }
        }
    }

    public indirect enum Node: Sendable {
        case text(String)
        case element(Element)
    }

    public struct Malformed: Error, CustomStringConvertible {
        public var line: Int
        public var description: String
    }

    public var root: Element

    /// Parses `text`. - Throws: ``Malformed`` with the line and the parser's reason.
    public init(parsing text: String) throws {
        let parser = XMLParser(data: Data(text.utf8))
        let builder = Builder()
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else {
            throw Malformed(line: parser.lineNumber, description: "line \(parser.lineNumber): \(parser.parserError.map { "\($0)" } ?? "not well formed")")
        }
        self.root = root
    }

    /// Collects elements as the parser meets them; used on one thread, inside `init`.
    final class Builder: NSObject, XMLParserDelegate {
        var stack: [Element] = []
        var root: Element?

        func parser(
            _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]
        ) {
            stack.append(Element(name: name, attributes: attributes))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].children.append(.text(string))
        }

        func parser(_ parser: XMLParser, foundCDATA block: Data) {
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].children.append(.text(String(decoding: block, as: UTF8.self)))
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            guard let element = stack.popLast() else { return }
            if stack.isEmpty { root = element } else { stack[stack.count - 1].children.append(.element(element)) }
        }
    }
}
