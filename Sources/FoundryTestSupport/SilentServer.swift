import NIOCore
import NIOPosix

/// A TCP server on loopback that takes every connection and never sends a byte, as a server
/// that hangs before its first answer (or a firewall that swallows what it lets through).
///
/// ```swift
/// let server = try await SilentServer.start()
/// defer { Task { await server.stop() } }
/// ```
public final class SilentServer: Sendable {
    public let port: Int
    private let server: any Channel

    private init(port: Int, server: any Channel) {
        self.port = port
        self.server = server
    }

    public static func start() async throws -> SilentServer {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        return SilentServer(port: server.localAddress?.port ?? 0, server: server)
    }

    /// Stops listening; connections already taken end with their clients.
    public func stop() async {
        try? await server.close()
    }
}
