import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on loopback that passes bytes both ways and cuts once: when the server side
/// has sent `cutAfter` bytes in all, the connection carrying them gets the bytes up to that
/// point and is closed, as a dropped network or a failover drops it. Later connections pass.
///
/// With `every`, each connection is cut after its own `cutAfter` bytes; with `.stall`, a cut
/// connection stays open and carries nothing more either way, as a half-open one.
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
        var cuts = 0
        var stalled = false
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    /// What a cut does to its connection.
    public enum Cut: Sendable {
        /// Closes it, after the bytes up to the cut.
        case close
        /// Keeps it open, carrying nothing more.
        case stall
    }

    /// How many connections were cut.
    public var cuts: Int { shared.state.withLock { $0.cuts } }

    private init(port: Int, server: any Channel, shared: Shared) {
        self.port = port
        self.server = server
        self.shared = shared
    }

    public static func start(
        to host: String, port target: Int, cutAfter: Int, every: Bool = false, cut: Cut = .close
    ) async throws -> CuttingProxy {
        let shared = Shared()
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { client in
                ClientBootstrap(group: client.eventLoop).connect(host: host, port: target).flatMap { upstream in
                    let link = Link()
                    shared.state.withLock { state in
                        state.open[ObjectIdentifier(client)] = client
                        state.open[ObjectIdentifier(upstream)] = upstream
                    }
                    return client.eventLoop.makeCompletedFuture {
                        try client.pipeline.syncOperations.addHandler(Relay(partner: upstream, budget: nil, link: link, shared: shared, cut: cut))
                    }.flatMap {
                        upstream.eventLoop.submit {
                            let budget = Budget(shared: shared, limit: cutAfter, every: every)
                            try upstream.pipeline.syncOperations.addHandler(Relay(partner: client, budget: budget, link: link, shared: shared, cut: cut))
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

    /// Stalls every connection, open and to come: each stays open and carries nothing more
    /// either way, as when a network or a server hangs.
    public func stall() {
        shared.state.withLock { $0.stalled = true }
    }

    /// One proxied connection: what its server side sent, and whether it was cut.
    final class Link: Sendable {
        let state = Mutex((sent: 0, cut: false))
    }

    /// The bytes the server side may still send before the cut.
    struct Budget: Sendable {
        let shared: Shared
        let limit: Int
        let every: Bool

        /// How many of `count` bytes pass before `link` is cut; nil when all pass.
        func take(_ count: Int, on link: Link) -> Int? {
            if every {
                let allowed = link.state.withLock { state -> Int? in
                    guard state.sent + count > limit else {
                        state.sent += count
                        return nil
                    }
                    state.cut = true
                    return limit - state.sent
                }
                if allowed != nil { shared.state.withLock { $0.cuts += 1 } }
                return allowed
            }
            let allowed = shared.state.withLock { state -> Int? in
                guard state.cuts == 0, state.sent + count > limit else {
                    state.sent += count
                    return nil
                }
                state.cuts = 1
                return limit - state.sent
            }
            if allowed != nil { link.state.withLock { $0.cut = true } }
            return allowed
        }
    }

    final class Relay: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let partner: any Channel
        let budget: Budget?
        let link: Link
        let shared: Shared
        let cut: Cut

        init(partner: any Channel, budget: Budget?, link: Link, shared: Shared, cut: Cut) {
            self.partner = partner
            self.budget = budget
            self.link = link
            self.shared = shared
            self.cut = cut
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            // A stalled connection swallows what comes, both ways.
            if link.state.withLock({ $0.cut }) || shared.state.withLock({ $0.stalled }) { return }
            var buffer = unwrapInboundIn(data)
            if let budget, let allowed = budget.take(buffer.readableBytes, on: link) {
                let partner = partner, slice = buffer.readSlice(length: allowed) ?? ByteBuffer()
                switch cut {
                case .close:
                    partner.writeAndFlush(slice).whenComplete { _ in partner.close(promise: nil) }
                    context.close(promise: nil)
                case .stall:
                    partner.writeAndFlush(slice, promise: nil)
                }
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
