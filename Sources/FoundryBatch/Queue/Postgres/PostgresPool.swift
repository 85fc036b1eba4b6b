import PostgresNIO

/// The queue's connections: at most `limit` open, an idle one reused, a lease waiting for one
/// to come back when all are out.
///
/// Not postgres-nio's `PostgresClient`: its connections are made where no ``ReadGate`` can be
/// put in front of them, its lease wait ignores the caller's cancellation (a SIGTERM while the
/// database is away must end the command at once) and its circuit breaker has its own idea of
/// how long a database may be away. Here every wait is the caller's: a connect fails as soon
/// as it fails, and ``PostgresQueue/storage(_:_:)`` decides whether to try again.
actor PostgresPool {
    private let connector: PostgresConnector
    private let limit: Int
    private var idle: [PostgresConnection] = []
    /// Connections open or being opened, leased or idle.
    private var open = 0
    private var nextID = 1
    private var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    private var closed = false

    init(connector: PostgresConnector, limit: Int) {
        self.connector = connector
        self.limit = limit
    }

    /// Runs `body` on a connection of the pool, which gets it back afterwards (a closed one is dropped).
    ///
    /// - Throws: what connecting threw (see ``PostgresConnector/connect(id:)``), `CancellationError`,
    ///   or what `body` threw.
    func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        do {
            let result = try await body(connection)
            giveBack(connection)
            return result
        } catch {
            giveBack(connection)
            throw error
        }
    }

    private func lease() async throws -> PostgresConnection {
        while true {
            try Task.checkCancellation()
            if closed { throw CancellationError() }
            while let connection = idle.popLast() {
                if !connection.isClosed { return connection }
                open -= 1
            }
            if open < limit {
                open += 1
                let id = nextID
                nextID += 1
                do {
                    let connection = try await connector.connect(id: id)
                    if closed { close(connection) }
                    return connection
                } catch {
                    open -= 1
                    wakeOne()
                    throw error
                }
            }
            try await waitForOne()
        }
    }

    /// Waits until a connection comes back or a slot frees; the caller's cancellation ends the wait.
    private func waitForOne() async throws {
        let id = nextID
        nextID += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiters.append((id, continuation))
                }
            }
        } onCancel: {
            Task { await self.stopWaiting(id) }
        }
    }

    private func stopWaiting(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    private func wakeOne() {
        guard !waiters.isEmpty else { return }
        waiters.removeFirst().continuation.resume()
    }

    private func giveBack(_ connection: PostgresConnection) {
        if closed || connection.isClosed {
            if !connection.isClosed { close(connection) }
            open -= 1
        } else {
            idle.append(connection)
        }
        wakeOne()
    }

    /// Closes the idle connections now and the leased ones when they come back.
    func shutdown() {
        closed = true
        for connection in idle { close(connection) }
        open -= idle.count
        idle.removeAll()
        for waiter in waiters { waiter.continuation.resume(throwing: CancellationError()) }
        waiters.removeAll()
    }

    /// Closes `connection`, keeping it alive until it has: postgres-nio checks, when one is
    /// freed, that it was closed.
    private nonisolated func close(_ connection: PostgresConnection) {
        Task { try? await connection.close() }
    }

    deinit {
        for connection in idle { close(connection) }
    }
}
