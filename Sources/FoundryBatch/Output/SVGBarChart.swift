import Foundation

/// A bar chart drawn as inline SVG: no script, no network, readable in any browser.
///
/// Each bar stacks one value per series, bottom first; hovering a bar shows its `tip`
/// (an SVG `<title>`), so the chart needs no axis grid to be read exactly.
struct SVGBarChart {
    struct Bar {
        var values: [Double]
        var tip: String
    }

    struct Series {
        var name: String
        /// A CSS class of the report's style sheet (`ok`, `bad`, `lat`).
        var style: String
    }

    var title: String
    var bars: [Bar]
    var series: [Series]
    /// Labels under the first, the middle and the last bar.
    var axis: (first: String, middle: String, last: String)
    /// What the y axis counts, e.g. `rows/min`.
    var unit: String

    static let width = 720.0, height = 220.0
    static let left = 64.0, right = 12.0, top = 24.0, bottom = 40.0

    var svg: String {
        let (w, h) = (Self.width, Self.height)
        let plotWidth = w - Self.left - Self.right, plotHeight = h - Self.top - Self.bottom
        let peak = max(bars.map { $0.values.reduce(0, +) }.max() ?? 0, 1e-9)
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" class=\"chart\">"
        out += "<title>\(HTML.escape(title))</title>"
        for (fraction, label) in [(0.0, "0"), (0.5, Self.number(peak / 2)), (1.0, Self.number(peak))] {
            let y = Self.format(Self.top + plotHeight * (1 - fraction))
            out += "<line class=\"grid\" x1=\"\(Self.format(Self.left))\" y1=\"\(y)\" x2=\"\(Self.format(w - Self.right))\" y2=\"\(y)\"/>"
            out += "<text class=\"tick\" x=\"\(Self.format(Self.left - 6))\" y=\"\(y)\" text-anchor=\"end\" dominant-baseline=\"middle\">\(HTML.escape(label))</text>"
        }
        out += "<text class=\"tick\" x=\"4\" y=\"14\">\(HTML.escape(unit))</text>"
        let slot = plotWidth / Double(max(bars.count, 1))
        for (index, bar) in bars.enumerated() {
            var base = Self.top + plotHeight
            out += "<g><title>\(HTML.escape(bar.tip))</title>"
            for (value, series) in zip(bar.values, series) where value > 0 {
                let height = plotHeight * value / peak
                base -= height
                out += "<rect class=\"\(series.style)\" x=\"\(Self.format(Self.left + Double(index) * slot + slot * 0.1))\" y=\"\(Self.format(base))\""
                out += " width=\"\(Self.format(slot * 0.8))\" height=\"\(Self.format(height))\"/>"
            }
            out += "</g>"
        }
        let labelY = Self.format(h - Self.bottom + 16)
        for (x, anchor, label) in [
            (Self.left, "start", axis.first), (Self.left + plotWidth / 2, "middle", axis.middle), (w - Self.right, "end", axis.last),
        ] {
            out += "<text class=\"tick\" x=\"\(Self.format(x))\" y=\"\(labelY)\" text-anchor=\"\(anchor)\">\(HTML.escape(label))</text>"
        }
        var legendX = Self.left
        for series in series where series.name != "" {
            out += "<rect class=\"\(series.style)\" x=\"\(Self.format(legendX))\" y=\"\(Self.format(h - 14))\" width=\"10\" height=\"10\"/>"
            out += "<text class=\"tick\" x=\"\(Self.format(legendX + 14))\" y=\"\(Self.format(h - 5))\">\(HTML.escape(series.name))</text>"
            legendX += 24 + Double(series.name.count) * 7
        }
        return out + "</svg>"
    }

    /// A coordinate with one decimal: enough for a 720-wide picture, and small.
    static func format(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        return tenths.truncatingRemainder(dividingBy: 10) == 0 ? String(Int(tenths / 10)) : String(tenths / 10)
    }

    /// An axis figure: whole above 10, else two significant digits.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "–" }
        if value >= 10 { return HTML.count(Int(min(value, 1e15).rounded())) }
        if value == 0 { return "0" }
        return String(format: "%.2g", value)
    }
}
