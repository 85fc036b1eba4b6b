import Foundation
#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let systemWrite = Darwin.write
#endif

/// Writes a file under a temporary name and renames it into place on ``commit()``.
///
/// A reader never sees half a file: until the rename the old file (if any) stays whole,
/// and a writer dropped without committing removes its temporary file.
public final class AtomicFileWriter {
    public let path: String
    let temporaryPath: String
    var fd: Int32
    var buffer: [UInt8] = []
    var failure: String?
    var committed = false
    /// Bytes written so far, buffered ones included.
    private(set) var size = 0

    static let flushSize = 1 << 20

    public init(path: String) throws(StorageError) {
        self.path = path
        try FilePaths.ensureParent(of: path)
        Self.sweepLeftovers(of: path)
        // mkstemp: a name no other writer (another file of this run, another process) has.
        let (fd, temporaryPath) = Self.makeTemporary(beside: path)
        guard fd >= 0 else {
            throw StorageError(path: path, message: "cannot write: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.temporaryPath = temporaryPath
        // mkstemp makes the file 0600; give it the mode open(0644) would have, umask applied.
        let mask = umask(0)
        umask(mask)
        fchmod(fd, 0o644 & ~mask)
        buffer.reserveCapacity(Self.flushSize + 4096)
    }

    /// Removes temporary files of `path` that a killed writer left behind: `.name.XXXXXX`
    /// beside it, untouched for an hour (no export of this tool takes that long).
    static func sweepLeftovers(of path: String, now: Date = Date()) {
        let folder = (path as NSString).deletingLastPathComponent
        let prefix = "." + (path as NSString).lastPathComponent + "."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) && name.count == prefix.count + 6 {
            let file = (folder as NSString).appendingPathComponent(name)
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: file))?[.modificationDate] as? Date,
                now.timeIntervalSince(modified) > 3600
            else { continue }
            try? FileManager.default.removeItem(atPath: file)
        }
    }

    /// Opens a new, uniquely named file in the folder of `path`.
    static func makeTemporary(beside path: String) -> (Int32, String) {
        let folder = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        var template = Array((folder as NSString).appendingPathComponent(".\(name).XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        let made = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return (fd, made)
    }

    /// Checks that a file can be created in the folder of `path`, leaving nothing behind.
    public static func probe(folderOf path: String) throws(StorageError) {
        let (fd, temporary) = makeTemporary(beside: path)
        guard fd >= 0 else {
            let folder = (path as NSString).deletingLastPathComponent
            throw StorageError(path: folder, message: "cannot write files in this folder: \(String(cString: strerror(errno))); fix its permissions or choose another output: path")
        }
        close(fd)
        unlink(temporary)
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
    }

    public func write(_ bytes: [UInt8]) {
        size += bytes.count
        buffer.append(contentsOf: bytes)
        if buffer.count >= Self.flushSize { flush() }
    }

    func flush() {
        guard failure == nil, !buffer.isEmpty else { return }
        var offset = 0
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { raw in
                systemWrite(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                failure = String(cString: strerror(errno))
                break
            }
            offset += written
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Drops what was written after the first `size` bytes (a step that starts over).
    func truncate(to size: Int) {
        flush()
        if failure == nil, ftruncate(fd, off_t(size)) != 0 || lseek(fd, off_t(size), SEEK_SET) < 0 {
            failure = String(cString: strerror(errno))
        }
        self.size = size
    }

    /// Flushes, syncs and renames the file into place, then syncs the folder, so that after
    /// a power cut the file is either the old one or the whole new one.
    public func commit() throws(StorageError) {
        flush()
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        fd = -1
        if let failure { throw StorageError(path: path, message: "cannot write: \(failure)") }
        guard rename(temporaryPath, path) == 0 else {
            throw StorageError(path: path, message: "cannot move the finished file into place: \(String(cString: strerror(errno)))")
        }
        committed = true
        let folder = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            let code = fsync(folder) == 0 ? 0 : errno
            close(folder)
            // EINVAL: a file system that cannot sync folders; the rename stands all the same.
            if code != 0, code != EINVAL {
                throw StorageError(path: path, message: "cannot sync the folder after writing: \(String(cString: strerror(code)))")
            }
        }
    }
}
