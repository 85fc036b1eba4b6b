import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a file line by line in fixed-size chunks, so a million-line input never sits in memory.
///
/// Handles a leading UTF-8 BOM and CRLF line ends; a line may be of any length.
struct LineReader: ~Copyable {
    static let chunkSize = 1 << 20

    let fd: Int32
    var buffer: [UInt8] = []
    var start = 0
    /// Where the search for the next line end goes on: a line longer than a chunk is
    /// scanned once, not again from its start after every chunk.
    var scanned = 0
    /// Bytes searched for line ends so far: about the file's size, however long its lines.
    private(set) var examined = 0
    var atEOF = false
    var firstLine = true
    /// The 1-based number of the line last returned.
    private(set) var lineNumber = 0

    init(path: String) throws(InputError) {
        // Asked of FileManager, not fstat: `stat` is declared by two of the system's modules,
        // and which one a clean build picks varies.
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw InputError(file: path, line: nil, message: "is a folder, not a JSONL file")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let reason = errno == ENOENT ? "no such file" : String(cString: strerror(errno))
            throw InputError(file: path, line: nil, message: "cannot open the input: \(reason)")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// The next line without its line end, or `nil` at the end of the file.
    mutating func next() -> ArraySlice<UInt8>? {
        while true {
            let from = max(start, scanned)
            if let newline = buffer[from...].firstIndex(of: 0x0A) {
                examined += newline + 1 - from
                var line = buffer[start..<newline]
                start = newline + 1
                scanned = start
                return finish(&line)
            }
            examined += buffer.count - from
            scanned = buffer.count
            if atEOF {
                guard start < buffer.count else { return nil }
                var line = buffer[start...]
                start = buffer.count
                return finish(&line)
            }
            fill()
        }
    }

    private mutating func finish(_ line: inout ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        lineNumber += 1
        if line.last == 0x0D { line = line.dropLast() }
        if firstLine {
            firstLine = false
            if line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
        }
        return line
    }

    private mutating func fill() {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            scanned -= start
            start = 0
        }
        let old = buffer.count
        // No reserveCapacity(old + chunk) here: reserving exactly that much on every chunk
        // defeats the array's doubling and copies a long line once per chunk.
        buffer.append(contentsOf: repeatElement(0, count: Self.chunkSize))
        let got = buffer.withUnsafeMutableBytes { raw in
            read(fd, raw.baseAddress! + old, Self.chunkSize)
        }
        buffer.removeLast(Self.chunkSize - max(got, 0))
        if got <= 0 { atEOF = true }
    }
}
