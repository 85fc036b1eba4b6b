import Foundation

/// JSON text of the emulator's answers, written without Foundation's `JSONSerialization`.
///
/// The emulator builds its bodies from Swift dictionaries, arrays, strings and numbers;
/// bridging those to Foundation's classes cost it more CPU per answer than everything else it
/// does, which made the emulator, not the client under test, the bottleneck at thousands of
/// requests in flight. A value of any other kind (one parsed back by `JSONSerialization`, an
/// `NSNumber`) is written by `JSONSerialization` itself.
enum EmulatorJSON {
    /// The compact JSON text of `object`, slashes unescaped, keys in the dictionary's order.
    static func bytes(_ object: Any) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(object, to: &out)
        return out
    }

    static func write(_ value: Any, to out: inout [UInt8]) {
        let kind = type(of: value)
        if kind == String.self {
            writeString(value as! String, to: &out)
        } else if kind == Int.self {
            out.append(contentsOf: String(value as! Int).utf8)
        } else if kind == Bool.self {
            out.append(contentsOf: ((value as! Bool) ? "true" : "false").utf8)
        } else if kind == Double.self, (value as! Double).isFinite {
            out.append(contentsOf: String(value as! Double).utf8)
        } else if kind == [String: Any].self {
            writeObject(value as! [String: Any], to: &out)
        } else if kind == [Any].self {
            writeArray(value as! [Any], to: &out)
        } else if kind == [[String: Any]].self {
            writeArray(value as! [[String: Any]], to: &out)
        } else if kind == [String].self {
            writeArray(value as! [String], to: &out)
        } else if kind == [Double].self {
            writeArray(value as! [Double], to: &out)
        } else if value is NSNull {
            out.append(contentsOf: "null".utf8)
        } else if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .withoutEscapingSlashes]) {
            out.append(contentsOf: data)
        } else {
            out.append(contentsOf: "null".utf8)
        }
    }

    static func writeObject(_ object: [String: Any], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for (key, item) in object {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            writeString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            write(item, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func writeArray<Element>(_ items: [Element], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            write(item, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func writeString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Lower-case hex of `bytes` (a digest's prefix, say).
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var text: [UInt8] = []
        for byte in bytes {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
