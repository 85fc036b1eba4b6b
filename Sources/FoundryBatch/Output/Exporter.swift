/// What an export wrote.
public struct ExportReport: Sendable, Equatable {
    public var output: String
    public var errors: String
    public var succeeded = 0
    public var failed = 0
}

/// Writes the results and errors files from the queue, in input order, in the Batch API
/// output shape.
///
/// ```json
/// {"id":"batch_req_…","custom_id":"t-1","response":{"status_code":200,"request_id":"…","body":{…}},"error":null}
/// ```
/// Each stored response is spliced in as stored: one line of valid JSON, written so by the
/// runner (``ServiceBody/decode(_:)``); a body stored by an older version with line breaks
/// is compacted on the way (``ServiceBody/exportable(_:)``).
public struct Exporter: Sendable {
    public var queue: any RowQueue

    public init(queue: any RowQueue) {
        self.queue = queue
    }

    public func export(output: String, errors: String) async throws -> ExportReport {
        let results = try AtomicFileWriter(path: output)
        let failures = try AtomicFileWriter(path: errors)
        var report = ExportReport(output: output, errors: errors)
        var line: [UInt8] = []
        line.reserveCapacity(4096)
        try await queue.forEachFinished { row in
            line.removeAll(keepingCapacity: true)
            Self.encode(row, into: &line)
            if row.state == .succeeded {
                results.write(line)
                report.succeeded += 1
            } else {
                failures.write(line)
                report.failed += 1
            }
        }
        try results.commit()
        try failures.commit()
        return report
    }

    /// One output line, newline included.
    static func encode(_ row: ExportRow, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"id":"#.utf8)
        JSONValue.writeString("batch_req_" + (row.clientRequestID ?? String(row.seq)), to: &out)
        out.append(contentsOf: #","custom_id":"#.utf8)
        JSONValue.writeString(row.id, to: &out)
        out.append(contentsOf: #","response":"#.utf8)
        if let status = row.statusCode, let body = row.response {
            out.append(contentsOf: #"{"status_code":"#.utf8)
            out.append(contentsOf: String(status).utf8)
            out.append(contentsOf: #","request_id":"#.utf8)
            if let requestID = row.requestID { JSONValue.writeString(requestID, to: &out) } else { out.append(contentsOf: "null".utf8) }
            out.append(contentsOf: #","body":"#.utf8)
            out.append(contentsOf: ServiceBody.exportable(body).utf8)
            out.append(UInt8(ascii: "}"))
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(contentsOf: #","error":"#.utf8)
        if row.state == .failed {
            let error = row.error ?? RowError(code: "unknown", message: "the row failed without a recorded error")
            JSONValue.object([
                ("code", .string(error.code)), ("message", .string(error.message)), ("attempts", .int(row.attempts)),
            ]).write(to: &out)
        } else {
            out.append(contentsOf: "null".utf8)
        }
        if !row.variant.isEmpty {
            out.append(contentsOf: #","variant":"#.utf8)
            JSONValue.writeString(row.variant, to: &out)
        }
        if let target = row.target {
            out.append(contentsOf: #","target":"#.utf8)
            JSONValue.writeString(target, to: &out)
        }
        if let metadata = row.metadata {
            out.append(contentsOf: #","metadata":"#.utf8)
            out.append(contentsOf: metadata.utf8)
        }
        out.append(contentsOf: "}\n".utf8)
    }
}
