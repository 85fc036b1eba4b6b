import Foundation

/// Text that came from a service, made safe to print and store.
public enum ServiceText {
    /// Control characters (escapes, line breaks, NUL), format characters (a right-to-left
    /// override) and line or paragraph separators: none of them may reach a terminal.
    static func unsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    /// `text` without control, format or separator characters (escape sequences, line
    /// breaks, NUL, a right-to-left override), each replaced by a space, and cut to `limit`
    /// characters.
    public static func printable(_ text: String, limit: Int) -> String {
        var result = String.UnicodeScalarView()
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                result.append(contentsOf: "...".unicodeScalars)
                break
            }
            result.append(Self.unsafe(scalar) ? " " : scalar)
            count += 1
        }
        return String(result).trimmingCharacters(in: .whitespaces)
    }

    /// A service's error code as a stable code for `retry --code`: letters, digits and
    /// `_ . -`, at most 64; nil when nothing usable is left.
    public static func code(_ text: String) -> String? {
        let kept = text.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_.-".unicodeScalars.contains($0)) }
        let code = String(String.UnicodeScalarView(kept.prefix(64)))
        return code.isEmpty ? nil : code
    }

    /// An error's case without its associated values, which may quote a request's headers
    /// (AsyncHTTPClient's `invalidHeaderFieldValues([...])` holds the value it refused).
    public static func caseName(of error: any Error) -> String {
        String("\(error)".prefix { $0 != "(" })
    }
}
