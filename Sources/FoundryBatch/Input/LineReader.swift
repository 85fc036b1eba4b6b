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
    /// Where each chunk is read before it is appended to `buffer`; freed with the reader.
    private let scratch: UnsafeMutableBufferPointer<UInt8>
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
        scratch = .allocate(capacity: Self.chunkSize)
    }

    deinit {
        close(fd)
        scratch.deallocate()
    }

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
        // Read into a scratch area, then append its bytes in one copy. Growing the buffer by
        // a chunk of zeros and trimming it back costs a generic per-byte loop in a debug
        // build, which was most of the test suite's time.
        let scratch = self.scratch
        let got = read(fd, scratch.baseAddress!, scratch.count)
        if got > 0 { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: scratch[0..<got])) }
        if got <= 0 { atEOF = true }
    }
}
