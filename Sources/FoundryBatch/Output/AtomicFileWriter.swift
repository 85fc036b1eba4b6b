import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
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

    static let flushSize = 1 << 20

    public init(path: String) throws(StorageError) {
        self.path = path
        try FilePaths.ensureParent(of: path)
        let folder = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        temporaryPath = (folder as NSString).appendingPathComponent(".\(name).\(getpid()).tmp")
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw StorageError(path: path, message: "cannot write: \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(Self.flushSize + 4096)
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
    }

    public func write(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= Self.flushSize { flush() }
    }

    func flush() {
        guard failure == nil, !buffer.isEmpty else { return }
        var offset = 0
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { raw in
                Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
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

    /// Flushes, syncs and renames the file into place.
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
    }
}
