import Foundation

/// The few pieces of HTML the report is written with.
///
/// What the report writes is also well-formed XML (every element closed, every attribute
/// quoted, no bare `&` or `<`), so the tests can parse it strictly.
enum HTML {
    /// `text` safe as element content: `&`, `<` and `>` as entities, and control characters
    /// (which neither HTML nor XML allows) as U+FFFD. Quotes stay as they are (six bytes
    /// each escaped): the page puts no text of the data in an attribute.
    static func escape(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case "\u{0}"..."\u{1F}", "\u{7F}"..."\u{9F}", "\u{FFFE}", "\u{FFFF}": out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// `<tag class="...">escaped text</tag>`.
    static func element(_ tag: String, _ text: String, class style: String? = nil) -> String {
        let attribute = style.map { " class=\"\($0)\"" } ?? ""
        return "<\(tag)\(attribute)>\(escape(text))</\(tag)>"
    }

    /// A table: a header row, then rows of cells already written as HTML (`<td>...</td>`),
    /// the row at index `i` with the class `rowClasses[i]` when given.
    static func table(_ headers: [String], _ rows: [String], class style: String? = nil, rowClasses: [String?] = []) -> String {
        func attribute(_ style: String?) -> String { style.map { " class=\"\($0)\"" } ?? "" }
        return "<table\(attribute(style))><thead><tr>" + headers.map { element("th", $0) }.joined() + "</tr></thead><tbody>"
            + rows.enumerated().map { "<tr\(attribute($0.offset < rowClasses.count ? rowClasses[$0.offset] : nil))>\($0.element)</tr>" }.joined()
            + "</tbody></table>"
    }

    /// A number cell.
    static func number(_ text: String) -> String { element("td", text, class: "n") }

    /// A count with thousands separated by commas, whatever the machine's locale.
    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out += "," }
            out.append(digit)
        }
        return value < 0 ? "-" + out : out
    }

    /// A latency for people: `850 ms`, `4.2 s`, `3m10s`.
    static func latency(_ milliseconds: Double?) -> String {
        guard let milliseconds, milliseconds.isFinite else { return "–" }
        if milliseconds < 1000 { return String(format: "%.0f ms", milliseconds) }
        if milliseconds < 60_000 { return String(format: "%.1f s", milliseconds / 1000) }
        return ProgressReporter.duration(milliseconds / 1000)
    }

    /// A moment in UTC, `2026-12-02 16:05:10 UTC`.
    static func time(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }
}
