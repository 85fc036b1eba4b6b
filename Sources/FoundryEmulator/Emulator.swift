import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A running Foundry + Entra emulator on a loopback port.
///
/// Start one per test (port 0 picks a free port) or per `endpoint: emulator` run:
/// ```swift
/// try await Emulator.withRunning(EmulatorConfiguration.demo()) { emulator in
///     let url = emulator.baseURL   // http://127.0.0.1:PORT
/// }
/// ```
public final class Emulator: Sendable {
    /// The bound port.
    public let port: Int
    /// `http://127.0.0.1:PORT`: the Foundry endpoint and the Entra authority host.
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    let state: EmulatorState
    let task: Task<Void, any Error>

    init(port: Int, state: EmulatorState, task: Task<Void, any Error>) {
        self.port = port
        self.state = state
        self.task = task
    }

    /// Starts serving; returns once the port is bound.
    public static func start(_ configuration: EmulatorConfiguration, logger: Logger? = nil) async throws -> Emulator {
        let state = EmulatorState(configuration: configuration)
        let router = Router()
        EntraRoutes(state: state).register(on: router)
        FoundryRoutes(state: state).register(on: router)
        router.get("/emulator/stats") { _, _ in
            let data = (try? JSONEncoder().encode(state.snapshot())) ?? Data()
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        var quiet = Logger(label: "foundry-emulator")
        quiet.logLevel = .critical
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router,
            // A backlog as deep as the kernel allows: a client opening thousands of connections at
            // once would otherwise see SYNs dropped and wait a second to retry, which the
            // service's front door does not make it do.
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "foundry-emulator", backlog: 4096),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            logger: logger ?? quiet
        )
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var bound: Int?
        for await port in ports { bound = port }
        guard let bound, bound > 0 else {
            task.cancel()
            _ = try? await task.value
            throw EmulatorError(message: "the emulator could not listen on \(configuration.host):\(configuration.port)")
        }
        return Emulator(port: bound, state: state, task: task)
    }

    /// Runs `body` with a started emulator and stops it afterwards, whatever happens.
    public static func withRunning<T>(
        _ configuration: EmulatorConfiguration, _ body: (Emulator) async throws -> T
    ) async throws -> T {
        let emulator = try await start(configuration)
        do {
            let result = try await body(emulator)
            await emulator.stop()
            return result
        } catch {
            await emulator.stop()
            throw error
        }
    }

    /// Stops serving and waits for the server to close.
    public func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    /// Waits until the server stops (for `foundry-batch emulator`).
    public func wait() async throws {
        try await task.value
    }

    /// What the emulator has seen so far.
    public var stats: EmulatorStats { state.snapshot() }

    /// The configuration in force.
    public var configuration: EmulatorConfiguration { state.configuration }

    /// Changes the configuration while serving (grant a role, expire a secret, lift a limit).
    public func update(_ change: (inout EmulatorConfiguration) -> Void) {
        state.update(change)
    }

    /// Mints a federated token (as a Kubernetes issuer would) for workload identity tests.
    public func federatedToken(clientID: String, lifetime: TimeInterval = 3600) -> String {
        state.issuer.mint(
            .init(
                tenantID: EmulatorConfiguration.demoTenantID, appID: clientID, audience: EmulatorTokenIssuer.federatedAudience,
                expires: Date().addingTimeInterval(lifetime), subject: "system:serviceaccount:default:workload"
            )
        )
    }
}

/// The emulator could not start.
public struct EmulatorError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
