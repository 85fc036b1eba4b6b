import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on loopback that passes bytes both ways and cuts once: when the server side
/// has sent `cutAfter` bytes in all, the connection carrying them gets the bytes up to that
/// point and is closed, as a dropped network or a failover drops it. Later connections pass.
///
/// ```swift
/// let proxy = try await CuttingProxy.start(to: "127.0.0.1", port: 5432, cutAfter: 200_000)
/// defer { Task { await proxy.stop() } }
/// ```
public final class CuttingProxy: Sendable {
    public let port: Int
    private let server: any Channel
    private let shared: Shared

    final class Shared: Sendable {
        let state = Mutex(State())
    }

    struct State {
        var sent = 0
        var cut = false
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    /// How many times a connection was cut (0 or 1).
    public var cuts: Int { shared.state.withLock { $0.cut ? 1 : 0 } }

    private init(port: Int, server: any Channel, shared: Shared) {
        self.port = port
        self.server = server
        self.shared = shared
    }

    public static func start(to host: String, port target: Int, cutAfter: Int) async throws -> CuttingProxy {
        let shared = Shared()
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { client in
                ClientBootstrap(group: client.eventLoop).connect(host: host, port: target).flatMap { upstream in
                    shared.state.withLock { state in
                        state.open[ObjectIdentifier(client)] = client
                        state.open[ObjectIdentifier(upstream)] = upstream
                    }
                    return client.eventLoop.makeCompletedFuture {
                        try client.pipeline.syncOperations.addHandler(Relay(partner: upstream, budget: nil))
                    }.flatMap {
                        upstream.eventLoop.submit {
                            try upstream.pipeline.syncOperations.addHandler(Relay(partner: client, budget: Budget(shared: shared, limit: cutAfter)))
                        }
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return CuttingProxy(port: server.localAddress?.port ?? 0, server: server, shared: shared)
    }

    /// Stops listening and closes every connection it carries; returns once all are closed.
    public func stop() async {
        try? await server.close()
        for channel in shared.state.withLock({ Array($0.open.values) }) { try? await channel.close() }
    }

    /// The bytes the server side may still send before the cut.
    struct Budget: Sendable {
        let shared: Shared
        let limit: Int

        /// How many of `count` bytes pass before the cut; nil when all pass.
        func take(_ count: Int) -> Int? {
            shared.state.withLock { state in
                guard !state.cut else { return nil }
                if state.sent + count <= limit {
                    state.sent += count
                    return nil
                }
                state.cut = true
                return limit - state.sent
            }
        }
    }

    final class Relay: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let partner: any Channel
        let budget: Budget?

        init(partner: any Channel, budget: Budget?) {
            self.partner = partner
            self.budget = budget
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            if let budget, let allowed = budget.take(buffer.readableBytes) {
                let partner = partner
                partner.writeAndFlush(buffer.readSlice(length: allowed) ?? ByteBuffer()).whenComplete { _ in partner.close(promise: nil) }
                context.close(promise: nil)
                return
            }
            partner.writeAndFlush(buffer, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
