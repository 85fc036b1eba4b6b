import Foundation

/// A `multipart/form-data` body split into its parts (RFC 7578), as the Files API receives it.
///
/// Only what an upload needs: each part's name, filename, content type and exact bytes. The
/// bytes are never decoded, so a file's CRLFs, a BOM or invalid UTF-8 reach the store as sent.
/// ```swift
/// let form = try Multipart(body: data, contentType: "multipart/form-data; boundary=xyz")
/// let file = form.part(named: "file")   // file?.data, file?.filename
/// ```
struct Multipart {
    struct Part {
        var name: String
        var filename: String?
        var contentType: String?
        var data: Data

        /// The part's value as text (for fields such as `purpose`).
        var text: String { String(decoding: data, as: UTF8.self) }
    }

    /// Why a body could not be read as a form.
    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    var parts: [Part] = []

    func part(named name: String) -> Part? {
        parts.first { $0.name == name }
    }

    /// The boundary parameter of a `multipart/form-data` Content-Type, unquoted.
    static func boundary(contentType: String) -> String? {
        let pieces = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let type = pieces.first, type.lowercased() == "multipart/form-data" else { return nil }
        for piece in pieces.dropFirst() {
            guard let equals = piece.firstIndex(of: "=") else { continue }
            guard piece[..<equals].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else { continue }
            let value = unquote(piece[piece.index(after: equals)...].trimmingCharacters(in: .whitespaces))
            return value.isEmpty ? nil : value
        }
        return nil
    }

    init(body: Data, contentType: String) throws(Failure) {
        guard let boundary = Self.boundary(contentType: contentType) else {
            throw Failure(message: "Content-Type must be multipart/form-data with a boundary")
        }
        // Work on a copy indexed from 0, so offsets are plain integers.
        let bytes = Data(body)
        let dashBoundary = Data("--\(boundary)".utf8)
        // The delimiter before every part but the first includes the line break that ends the
        // previous part's content; RFC 2046 requires CRLF, some clients send a bare LF.
        let crlfDelimiter = Data("\r\n--\(boundary)".utf8)
        let lfDelimiter = Data("\n--\(boundary)".utf8)
        guard let first = bytes.range(of: dashBoundary) else { throw Failure(message: "the body has no part delimited by the boundary") }
        var position = first.upperBound
        while true {
            // "--" right after a delimiter closes the form.
            if bytes.count >= position + 2, bytes[position] == UInt8(ascii: "-"), bytes[position + 1] == UInt8(ascii: "-") { break }
            // Transport padding, then the line break that ends the delimiter line.
            while position < bytes.count, bytes[position] == UInt8(ascii: " ") || bytes[position] == UInt8(ascii: "\t") { position += 1 }
            if position < bytes.count, bytes[position] == UInt8(ascii: "\r") { position += 1 }
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\n") else {
                throw Failure(message: "a boundary line is not followed by a line break")
            }
            position += 1
            let headerEnd: Range<Int>
            if let crlf = bytes.range(of: Data("\r\n\r\n".utf8), in: position..<bytes.count) {
                headerEnd = crlf
            } else if let lf = bytes.range(of: Data("\n\n".utf8), in: position..<bytes.count) {
                headerEnd = lf
            } else {
                throw Failure(message: "a part has no blank line after its headers")
            }
            let headers = Self.headers(String(decoding: bytes[position..<headerEnd.lowerBound], as: UTF8.self))
            let contentStart = headerEnd.upperBound
            // Searched from the blank line's own CRLF, so a client that puts the delimiter right
            // after the blank line (an empty part without the extra CRLF) still ends the part.
            let next: Range<Int>
            if let crlf = bytes.range(of: crlfDelimiter, in: (contentStart - 2)..<bytes.count) {
                next = crlf
            } else if let lf = bytes.range(of: lfDelimiter, in: (contentStart - 1)..<bytes.count) {
                next = lf
            } else {
                throw Failure(message: "the form is not closed by its boundary")
            }
            let content = next.lowerBound >= contentStart ? Data(bytes[contentStart..<next.lowerBound]) : Data()
            let disposition = Self.parameters(headers["content-disposition"] ?? "")
            if let name = disposition["name"] {
                parts.append(Part(name: name, filename: disposition["filename"], contentType: headers["content-type"], data: content))
            }
            position = next.upperBound
            if position >= bytes.count { break }
        }
    }

    /// Part headers by lowercased name.
    static func headers(_ text: String) -> [String: String] {
        var headers: [String: String] = [:]
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return headers
    }

    /// The parameters of `form-data; name="file"; filename="a.jsonl"`, by lowercased name.
    static func parameters(_ value: String) -> [String: String] {
        var result: [String: String] = [:]
        var current = ""
        var quoted = false
        var pieces: [String] = []
        // Split on semicolons outside quotes: a filename may contain one.
        var escaped = false
        for character in value {
            if escaped {
                current.append(character)
                escaped = false
            } else if quoted, character == "\\" {
                current.append(character)
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
                current.append(character)
            } else if character == ";", !quoted {
                pieces.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        pieces.append(current)
        for piece in pieces {
            guard let equals = piece.firstIndex(of: "=") else { continue }
            let name = piece[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            result[name] = unquote(piece[piece.index(after: equals)...].trimmingCharacters(in: .whitespaces))
        }
        return result
    }

    static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") else { return text }
        var result = ""
        var escaped = false
        for character in text.dropFirst().dropLast() {
            if escaped {
                result.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                result.append(character)
            }
        }
        return result
    }
}
