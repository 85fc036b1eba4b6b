import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A small HTTP server on loopback that answers each request exactly as a test scripts it.
///
/// The emulator behaves like Azure; this one behaves however a test needs a hostile or odd
/// service to: redirects, absurd `Retry-After` values, headers followed by a stalled body,
/// a connection dropped half way, bytes that are not HTTP at all. It records every request
/// it read, so a test can check what was (or was not) sent to it.
///
/// ```swift
/// try await ScriptedServer.withRunning { request, index in
///     [.send(ScriptedServer.response(status: 307, headers: [("Location", "https://elsewhere/")]))]
/// } body: { server in
///     // point the client at server.baseURL
/// }
/// ```
public final class ScriptedServer: Sendable {
    /// A request as the server read it.
    public struct Request: Sendable {
        public var method: String
        /// The request target: path and query.
        public var target: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }

        public var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    /// One step of an answer.
    public enum Action: Sendable {
        /// Write these bytes.
        case send([UInt8])
        /// Wait before the next step (a stall when it is the last).
        case pause(seconds: Double)
        /// Close the connection.
        case close
    }

    /// Given a request and its index (0 for the first the server read), the answer's steps.
    public typealias Script = @Sendable (Request, Int) -> [Action]

    let channel: any Channel
    let recorded: Mutex<[Request]>
    let script: Script

    /// The port the server listens on (127.0.0.1).
    public var port: Int { channel.localAddress?.port ?? 0 }
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// Every request read so far, in order.
    public var requests: [Request] { recorded.withLock { $0 } }

    init(channel: any Channel, script: @escaping Script) {
        self.channel = channel
        self.recorded = Mutex([])
        self.script = script
    }

    /// Starts a server on a free loopback port.
    public static func start(_ script: @escaping Script) async throws -> ScriptedServer {
        let box = ServerBox()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ScriptHandler(box: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let server = ScriptedServer(channel: channel, script: script)
        box.server.withLock { $0 = server }
        return server
    }

    /// Starts a server, runs `body` with it, and stops it on every path.
    public static func withRunning<T>(
        _ script: @escaping Script, body: (ScriptedServer) async throws -> T
    ) async throws -> T {
        let server = try await start(script)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    public func stop() async {
        try? await channel.close()
    }

    func record(_ request: Request) -> Int {
        recorded.withLock { requests in
            requests.append(request)
            return requests.count - 1
        }
    }

    /// The bytes of a whole HTTP/1.1 answer with `Content-Length`.
    public static func response(status: Int, reason: String = "Scripted", headers: [(String, String)] = [], body: String = "") -> [UInt8] {
        let bytes = Array(body.utf8)
        return head(status: status, reason: reason, headers: headers + [("Content-Length", String(bytes.count))]) + bytes
    }

    /// A JSON answer.
    public static func json(status: Int = 200, headers: [(String, String)] = [], _ body: String) -> [UInt8] {
        response(status: status, headers: headers + [("Content-Type", "application/json")], body: body)
    }

    /// Only the status line and headers (end with a blank line); the body is up to the script.
    public static func head(status: Int, reason: String = "Scripted", headers: [(String, String)]) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(reason)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        return Array((text + "\r\n").utf8)
    }
}

/// Hands the handlers the server once it exists (the handlers are made before `bind` returns).
final class ServerBox: Sendable {
    let server = Mutex<ScriptedServer?>(nil)
}

/// Reads requests off one connection and plays the script's steps for each, in order.
final class ScriptHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let box: ServerBox
    var pending: [UInt8] = []
    var playing = false
    var closed = false

    init(box: ServerBox) {
        self.box = box
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        pending.append(contentsOf: buffer.readableBytesView)
        answerNext(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Parses one whole request from `pending`, if there is one.
    func takeRequest() -> ScriptedServer.Request? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = pending.indices.dropLast(3).first(where: { pending[$0..<$0 + 4].elementsEqual(separator) }) else { return nil }
        let headText = String(decoding: pending[..<end], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        let bodyStart = end + 4
        guard pending.count >= bodyStart + length else { return nil }
        let body = Array(pending[bodyStart..<bodyStart + length])
        pending.removeFirst(bodyStart + length)
        return ScriptedServer.Request(
            method: requestLine.first.map(String.init) ?? "", target: requestLine.dropFirst().first.map(String.init) ?? "",
            headers: headers, body: body
        )
    }

    func answerNext(context: ChannelHandlerContext) {
        guard !playing, !closed, let server = box.server.withLock({ $0 }), let request = takeRequest() else { return }
        let index = server.record(request)
        playing = true
        play(server.script(request, index)[...], context: context)
    }

    func play(_ steps: ArraySlice<ScriptedServer.Action>, context: ChannelHandlerContext) {
        guard !closed else { return }
        guard let step = steps.first else {
            playing = false
            answerNext(context: context)
            return
        }
        let rest = steps.dropFirst()
        switch step {
        case .send(let bytes):
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
            play(rest, context: context)
        case .pause(let seconds):
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {
                self.play(rest, context: context)
            }
        case .close:
            closed = true
            context.close(promise: nil)
        }
    }
}
