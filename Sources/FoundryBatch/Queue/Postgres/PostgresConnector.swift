import FoundryAuth
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PostgresNIO

/// Opens the queue's connections: TCP, then TLS as `sslmode` asks, then the sign-in.
///
/// The socket and TLS are ours and postgres-nio gets the channel ready made, so that a
/// ``ReadGate`` can stand between the bytes and postgres-nio's handler.
struct PostgresConnector: Sendable {
    let location: PostgresLocation
    let password: String?
    let logger: Logger
    /// The TLS settings `sslmode` asks for; nil for plain TCP.
    let tls: (context: NIOSSLContext, required: Bool)?

    /// A connection that was being made went away, or none could be made: counted as a lost
    /// connection, so it is retried.
    struct Unreachable: Error, CustomStringConvertible {
        var description: String
    }

    /// How long connecting, and each TLS step, may wait for the server before it counts as lost.
    static let setupWait: Int64 = 10

    init(location: PostgresLocation, password: String?, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.location = location
        self.password = password
        self.logger = logger
        tls = try Self.tlsContext(location, environment: environment)
    }

    /// The trust roots of a `verify-*` mode: `PGSSLROOTCERT` or `~/.postgresql/root.crt` as
    /// libpq reads them, else the system's.
    static func tlsContext(_ location: PostgresLocation, environment: [String: String]) throws -> (context: NIOSSLContext, required: Bool)? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch location.sslMode {
        case .disable: return nil
        case .prefer, .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: break
        }
        if location.sslMode == .verifyCA || location.sslMode == .verifyFull {
            let home = environment["HOME"] ?? NSHomeDirectory()
            let named = environment["PGSSLROOTCERT"].flatMap { $0.isEmpty ? nil : $0 }
            let file = named ?? home + "/.postgresql/root.crt"
            if named == "system" {
                // libpq's word for the system's roots, which are the default here.
            } else if FileManager.default.fileExists(atPath: file) {
                do {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
                } catch {
                    throw StorageError(
                        path: file,
                        message: "the root certificates of sslmode=\(location.sslMode.rawValue) cannot be read (\(Self.certificateProblem(error, file: file))); give a PEM file of one or more certificates"
                    )
                }
            } else if named != nil {
                throw StorageError(path: file, message: "PGSSLROOTCERT names no file; give the PEM file of the server's certificate authority, or unset it for the system's roots")
            }
        }
        do {
            return (try NIOSSLContext(configuration: configuration), location.sslMode != .prefer)
        } catch {
            throw StorageError(path: location.display, message: "TLS cannot be set up for sslmode=\(location.sslMode.rawValue): \(error)")
        }
    }

    /// Connects, negotiates TLS and signs in.
    ///
    /// - Throws: ``Unreachable`` (the server is out of reach or went away: retried),
    ///   ``StorageError`` (the server refused TLS that `sslmode` requires, or its certificate),
    ///   `PSQLError` from the sign-in.
    func connect(id: Int) async throws -> PostgresConnection {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(Self.setupWait))
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ReadGate()) }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: location.host, port: location.port).get()
        } catch {
            throw Unreachable(description: "no connection to \(location.host):\(location.port) (\(Self.describe(error)))")
        }
        do {
            if let tls {
                // A server that takes the connection and never answers is closed, which ends the
                // wait; the error first, so that the step says so rather than "closed".
                let stalled = channel.eventLoop.scheduleTask(in: .seconds(Self.setupWait)) {
                    channel.pipeline.fireErrorCaught(NoAnswer())
                    channel.close(promise: nil)
                }
                defer { stalled.cancel() }
                try await startTLS(on: channel, context: tls.context, required: tls.required)
            }
            let configuration = PostgresConnection.Configuration(
                establishedChannel: channel, tls: .disable, username: location.user, password: password, database: location.database
            )
            return try await PostgresConnection.connect(on: channel.eventLoop, configuration: configuration, id: id, logger: logger).get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    /// Asks the server for TLS (PostgreSQL's `SSLRequest`) and, when it agrees, shakes hands.
    func startTLS(on channel: any Channel, context: NIOSSLContext, required: Bool) async throws {
        // The promise is made, and the handler added, on the event loop, where the channel
        // cannot close in between: a channel already closed fails it at once, one that closes
        // later fails it through the handler. Never left unfulfilled, never waited on forever.
        let answer = channel.eventLoop.flatSubmit {
            Self.fulfilled(on: channel, UInt8.self) { promise in
                try channel.pipeline.syncOperations.addHandler(SSLRequest(promise), position: .first)
            }
        }
        let offered: Bool
        do {
            offered = try await answer.get() == UInt8(ascii: "S")
        } catch let error as SSLRequest.Refused {
            throw StorageError(path: location.display, message: error.message)
        } catch is NoAnswer {
            throw Unreachable(description: "the server took the connection but did not answer the TLS request within \(Self.setupWait) s")
        } catch {
            throw Unreachable(description: "the connection closed while asking for TLS (\(Self.describe(error)))")
        }
        guard offered else {
            if required {
                throw StorageError(
                    path: location.display,
                    message: "the server does not offer TLS, and sslmode=\(location.sslMode.rawValue) requires it; turn on ssl in the server's postgresql.conf, or write sslmode=prefer or sslmode=disable"
                )
            }
            return
        }
        let host = location.host
        let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        let handshake = channel.eventLoop.flatSubmit {
            Self.fulfilled(on: channel, Void.self) { promise in
                let ssl = try NIOSSLClientHandler(context: context, serverHostname: serverName)
                try channel.pipeline.syncOperations.addHandler(ssl, position: .first)
                try channel.pipeline.syncOperations.addHandler(Handshake(promise), position: .after(ssl))
            }
        }
        do {
            try await handshake.get()
        } catch is NoAnswer {
            throw Unreachable(description: "the server did not finish the TLS handshake within \(Self.setupWait) s")
        } catch let error where Self.isTransport(error) {
            throw Unreachable(description: "the connection closed during the TLS handshake (\(Self.describe(error)))")
        } catch {
            let reason = Self.tlsReason(error)
            let message =
                if case .failedToValidateHostname = error as? NIOSSLExtraError {
                    "the server's certificate does not name \(host), and sslmode=\(location.sslMode.rawValue) checks it; connect by a name its certificate holds, or write sslmode=verify-ca"
                } else if reason == "certificate verify failed" {
                    "the server's certificate is not signed by an authority trusted here, and sslmode=\(location.sslMode.rawValue) checks it; give the server's certificate authority in PGSSLROOTCERT or ~/.postgresql/root.crt"
                } else {
                    "the TLS handshake with the server failed (\(reason)); check the server's TLS settings"
                }
            throw StorageError(path: location.display, message: message)
        }
    }

    /// Why a file of root certificates was refused, in words: BoringSSL only says it failed.
    static func certificateProblem(_ error: any Error, file: String) -> String {
        if !FileManager.default.isReadableFile(atPath: file) { return "this user may not read it" }
        if case .failedToLoadCertificate? = error as? NIOSSLError { return "it holds no PEM certificate, or a damaged one" }
        return tlsReason(error)
    }

    /// BoringSSL's reason in words (`wrong version number`), without the error's numbers and
    /// the source path it quotes; the error's own text, cut, when it holds none.
    static func tlsReason(_ error: any Error) -> String {
        let text = "\(error)"
        guard let marker = text.range(of: "OPENSSL_internal:") else { return ServiceText.printable(text, limit: 200) }
        let word = text[marker.upperBound...].prefix { $0.isUppercase || $0 == "_" || $0.isNumber }
        return word.replacingOccurrences(of: "_", with: " ").lowercased()
    }

    /// A promise that `install` hands to a handler it adds; failed at once when the channel
    /// is closed already or the handler cannot be added. Call on the channel's event loop.
    static func fulfilled<T: Sendable>(
        on channel: any Channel, _ type: T.Type, _ install: (EventLoopPromise<T>) throws -> Void
    ) -> EventLoopFuture<T> {
        let promise = channel.eventLoop.makePromise(of: T.self)
        if channel.isActive {
            do { try install(promise) } catch { promise.fail(error) }
        } else {
            promise.fail(ChannelError.eof)
        }
        return promise.futureResult
    }

    /// Whether `error` is the connection failing under TLS rather than TLS refusing the server.
    static func isTransport(_ error: any Error) -> Bool {
        if case .uncleanShutdown = error as? NIOSSLError { return true }
        return error is ChannelError || error is IOError
    }

    /// What went wrong on the way, in words: `connection refused`, not NIO's type dump.
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first { return describe(first.error) }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if let error = error as? ChannelError, case .connectTimeout = error { return "no answer within \(setupWait) s" }
        return "\(error)"
    }
}

/// The server took the connection and let a setup step wait ``PostgresConnector/setupWait`` seconds for its answer.
private struct NoAnswer: Error {}

/// A setup step in the pipeline: ends `promise` when it is done, and fails it when the
/// connection ends or errs first, so that no promise is left unfulfilled.
private class SetupStep<Value: Sendable>: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Value>

    init(_ promise: EventLoopPromise<Value>) { self.promise = promise }

    // Declared here so that the steps' own versions are what the pipeline calls: a subclass
    // method is no witness of a protocol requirement its base class left to the default.
    func handlerAdded(context: ChannelHandlerContext) {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }
}

/// Sends PostgreSQL's `SSLRequest` and reads the server's one-byte answer, then leaves the pipeline.
private final class SSLRequest: SetupStep<UInt8> {
    /// The server answered, but not as a PostgreSQL server may: a setting to fix, not an outage.
    struct Refused: Error {
        var message: String
    }

    override func handlerAdded(context: ChannelHandlerContext) {
        var request = context.channel.allocator.buffer(capacity: 8)
        request.writeInteger(Int32(8))
        request.writeInteger(Int32(80_877_103))
        context.writeAndFlush(NIOAny(request), promise: nil)
        context.read()
    }

    override func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let byte = buffer.readInteger(as: UInt8.self) else { return }
        if buffer.readableBytes > 0 {
            // Bytes after the answer, before TLS: what a man in the middle would inject (CVE-2021-23222).
            promise.fail(Refused(message: "the server sent more than its answer to the TLS request; the connection is not trusted"))
            context.close(promise: nil)
        } else if byte == UInt8(ascii: "S") || byte == UInt8(ascii: "N") {
            promise.succeed(byte)
        } else {
            promise.fail(Refused(message: "the server's answer to the TLS request is not PostgreSQL's; check the host and port"))
            context.close(promise: nil)
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Ends when the TLS handshake does, then leaves the pipeline.
private final class Handshake: SetupStep<Void> {
    override func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            promise.succeed(())
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}
