import FoundryAuth
import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The PostgreSQL implementation of ``RowQueue``: one schema per job in a database that
/// runners on several hosts share.
///
/// Rows are claimed under leases with `FOR UPDATE SKIP LOCKED`, so runners never wait for
/// each other's claims; a runner that dies (on any host) leaves leases that expire and
/// return its rows. Each operation that loses its connection retries with back-off for
/// ``patience`` and then fails with ``StateUnreachable`` (exit 3): nothing is kept in memory
/// meanwhile but the results waiting for their commit.
///
/// ```swift
/// let queue = try await PostgresQueue.open(location, jobName: job.name)
/// defer { queue.close() }
/// ```
public final class PostgresQueue: RowQueue {
    public let location: PostgresLocation
    let pool: PostgresPool
    /// `"schema".`, in front of every table and function name (written `§` in the SQL here).
    let prefix: String
    /// How long an operation retries a lost connection before the run stops.
    public let patience: TimeInterval
    let logger: Logger
    /// Answers to throw away after their step committed (``loseAnswers(_:)``).
    private let answersToLose = Mutex(0)
    /// What every step knows of the server: one lock for both, taken once a statement.
    private let health = Mutex(Health())

    struct Health {
        /// When the server last answered a statement or sent a row: where an outage found by
        /// a statement that waited in vain began.
        var lastAnswer = Date.distantPast
        /// Since when the database has been out of reach: the first lost connection after the
        /// server's last answer, nil while it answers. One outage for every step: a step that
        /// starts late in an outage gets what is left of the patience, not a patience of its
        /// own, and a step that had run for an hour before it lost its connection gets all of it.
        var outage: Outage?
    }

    struct Outage {
        var since: Date
        /// What the last lost connection said.
        var reason: String
    }

    /// The default of ``patience``: a database restart or a failover takes seconds to a minute.
    public static let defaultPatience: TimeInterval = 60

    init(location: PostgresLocation, pool: PostgresPool, patience: TimeInterval, logger: Logger) {
        self.location = location
        self.pool = pool
        self.patience = patience
        self.logger = logger
        prefix = "\"\(location.schema)\"."
    }

    /// Connects, creates or migrates the job's schema, and checks that it belongs to `jobName`.
    ///
    /// - Throws: ``StorageError`` (the database refused us, or the schema is another job's),
    ///   ``StateUnreachable`` when no connection is made within `patience`.
    public static func open(
        _ location: PostgresLocation, jobName: String, password: String?, patience: TimeInterval = defaultPatience,
        logger: Logger = Logger(label: "foundry-batch.postgres")
    ) async throws -> PostgresQueue {
        // One connection of our own first: the pool retries a refused sign-in quietly, and
        // the user must hear at once that the password is wrong, not wait for a timeout.
        let connector = try PostgresConnector(location: location, password: password, logger: logger)
        try await probe(connector, patience: patience)
        let queue = PostgresQueue(location: location, pool: PostgresPool(connector: connector, limit: 16), patience: patience, logger: logger)
        do {
            try await queue.migrate()
            try await queue.claimSchema(for: jobName)
        } catch {
            queue.close()
            throw error
        }
        return queue
    }

    /// Connects once and signs in: a refused password is a ``StorageError`` (exit 2) at once,
    /// a server out of reach is retried for `patience`, then ``StateUnreachable``.
    static func probe(_ connector: PostgresConnector, patience: TimeInterval) async throws {
        let location = connector.location
        let deadline = Date() + patience
        var delay = 0.1
        while true {
            do {
                let connection = try await connector.connect(id: 0)
                try? await connection.close()
                return
            } catch let error where isConnectionLoss(error) {
                if await RunControl.current?.reason == .interrupted {
                    throw StateUnreachable(location: location.display, seconds: patience - deadline.timeIntervalSinceNow, reason: describe(error), interrupted: true)
                }
                guard Date() + delay < deadline else {
                    throw StateUnreachable(location: location.display, seconds: patience, reason: describe(error))
                }
                try await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 2)
            } catch let error as PSQLError {
                let state = error.serverInfo?[.sqlState] ?? ""
                let fix =
                    if state == "28000" && (error.serverInfo?[.message] ?? "").contains("no encryption") {
                        "the server takes TLS connections only: write sslmode=require, or verify-full to check its certificate"
                    } else if state == "3D000" {
                        "create the database (createdb \(location.database)) or name one that exists"
                    } else if connector.password == nil && (error.code == .authMechanismRequiresPassword || state.hasPrefix("28")) {
                        "the server asks for a password: set PGPASSWORD or add a ~/.pgpass line (HOST:PORT:DATABASE:USER:PASSWORD, mode 0600)"
                    } else {
                        "check the user and the password (PGPASSWORD or ~/.pgpass), and that the user may use the database"
                    }
                let what = error.code == .authMechanismRequiresPassword ? "no password given" : describe(error)
                throw StorageError(path: location.display, message: "the database refused the sign-in as \(location.user): \(what); \(fix)")
            }
        }
    }

    /// Throws away the answers of the next `count` steps after they committed, as a dropped
    /// connection would, so that each runs again: how the tests prove every step safe to
    /// repeat. Never called outside tests.
    func loseAnswers(_ count: Int) {
        answersToLose.withLock { $0 = count }
    }

    /// Stops the connection pool; the session that opened the queue calls it last.
    public func close() {
        Task { [pool] in await pool.shutdown() }
    }

    // MARK: Running SQL

    /// A value bound to a `$n` of a statement.
    enum Value {
        case int(Int?), double(Double?), text(String?), bool(Bool?), texts([String]), ints([Int]), null
    }

    /// `sql` with `§` naming the job's schema, and `values` bound to `$1`, `$2`, ... in order.
    func statement(_ sql: String, _ values: [Value]) -> PostgresQuery {
        var binds = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .int(let v): binds.append(v)
            case .double(let v): binds.append(v)
            case .text(let v): binds.append(v)
            case .bool(let v): binds.append(v)
            case .texts(let v): binds.append(v)
            case .ints(let v): binds.append(v)
            case .null: binds.appendNull()
            }
        }
        return PostgresQuery(unsafeSQL: sql.replacingOccurrences(of: "§", with: prefix), binds: binds)
    }

    /// How long a statement may wait for the server's first answer: a connection the server
    /// dropped under a statement can leave it waiting forever.
    /// In an outage, a statement gets what is left of the patience, so that the steps winding
    /// a run down on a stalled database do not each wait 30 s.
    var answerTimeout: Double {
        guard let since = health.withLock({ $0.outage?.since }) else { return max(patience, 30) }
        return max(since.timeIntervalSinceNow + patience, 1)
    }

    /// Sends a statement and waits for the server to start answering (the rows then stream).
    ///
    /// - Throws: ``Timeout`` (a lost connection, closed so that the pool never hands it out again).
    func query(_ connection: PostgresConnection, _ sql: String, _ values: [Value] = []) async throws -> PostgresRowSequence {
        let query = statement(sql, values)
        let logger = logger
        let rows = try await Self.on(connection, seconds: answerTimeout, control: RunControl.current) {
            try await connection.query(query, logger: logger)
        }
        answered()
        return rows
    }

    /// The server answered: any outage is over.
    func answered() {
        health.withLock { health in
            health.lastAnswer = Date()
            health.outage = nil
        }
    }

    /// Notes a lost connection and returns since when the database has been out of reach.
    ///
    /// A statement that waited in vain found an outage that began at the server's last
    /// answer (or at `tryBegan`, when that is later), not when the wait gave up.
    func lost(_ reason: String, waitedInVain: Bool, tryBegan: Date, now: Date) -> Date {
        health.withLock { health in
            let since = health.outage?.since ?? (waitedInVain ? max(tryBegan, health.lastAnswer) : now)
            health.outage = Outage(since: since, reason: reason)
            return since
        }
    }

    /// Runs a statement and decodes every row it returns as `T`.
    func fetch<T: Decodable>(_ type: T.Type, _ connection: PostgresConnection, _ sql: String, _ values: [Value] = []) async throws -> [T] {
        try await PostgresRowDecoder.all(T.self, try await query(connection, sql, values))
    }

    /// Runs a statement and decodes its first row's first column.
    func value<T: Decodable>(_ type: T.Type, _ connection: PostgresConnection, _ sql: String, _ values: [Value] = []) async throws -> T? {
        for try await row in try await query(connection, sql, values) {
            guard let cell = row.first(where: { _ in true }) else { return nil }
            return try PostgresRowDecoder.Cell(cell: cell, codingPath: []).decode(Optional<T>.self)
        }
        return nil
    }

    /// Runs a statement; returns how many rows it returned (a `RETURNING` counts what it changed).
    @discardableResult
    func run(_ connection: PostgresConnection, _ sql: String, _ values: [Value] = []) async throws -> Int {
        var count = 0
        for try await _ in try await query(connection, sql, values) { count += 1 }
        return count
    }

    /// Runs a statement and hands each row to `each` as it arrives.
    ///
    /// A stream that stops mid-way with no error (a half-open connection) would wait for the
    /// next row forever: after ``answerTimeout`` without one, its connection is closed, which
    /// ends the stream as a lost connection, and the step goes on from its last row.
    func streamed(_ connection: PostgresConnection, _ sql: String, _ values: [Value], _ each: (PostgresRow) throws -> Void) async throws {
        let rows = try await query(connection, sql, values)
        let beat = Heartbeat(), idle = answerTimeout
        let watchdog = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(min(idle / 4, 5)))
                if -beat.last.withLock({ $0 }).timeIntervalSinceNow > idle {
                    try? await connection.close()
                    return
                }
            }
        }
        defer { watchdog.cancel() }
        do {
            for try await row in rows {
                beat.last.withLock { $0 = Date() }
                try each(row)
            }
        } catch {
            // The stream's last row was the server's last answer, if it came after the statement's.
            health.withLock { $0.lastAnswer = max($0.lastAnswer, beat.last.withLock { $0 }) }
            throw error
        }
    }

    /// When a stream last brought a row.
    final class Heartbeat: Sendable {
        let last = Mutex(Date())
    }

    /// The error that ends a step instead of a try at `time`: the outage has outlasted the
    /// patience by then, or the run was interrupted during it; nil when no outage is known.
    func givingUp(at time: Date, interrupted: Bool) -> StateUnreachable? {
        guard let known = health.withLock({ $0.outage }), interrupted || time >= known.since + patience else { return nil }
        return StateUnreachable(
            // A stall is found late (a statement waits its answer timeout): the outage then lasted longer than the patience.
            location: location.display, seconds: interrupted ? -known.since.timeIntervalSinceNow : max(patience, -known.since.timeIntervalSinceNow),
            reason: known.reason,
            interrupted: interrupted
        )
    }

    /// How many lost connections in a row, with no progress, a step takes (over at least
    /// the patience) before it stops.
    static let fruitlessTries = 5

    /// A step's lost connections since it last got further.
    struct FruitlessTries {
        var count = 0
        var since = Date()
        /// Where the step's cursor stood at the last loss.
        var mark: Int?

        /// Counts a loss at `now`; returns whether the step got further since the last one
        /// (the count then starts again).
        mutating func lost(at now: Date, progress: Int?) -> Bool {
            let moved = progress != mark
            if moved || count == 0 { (count, since, mark) = (0, now, progress) }
            count += 1
            return moved
        }
    }

    /// How a step may be bounded.
    enum Step {
        /// A few statements: the whole step must end within ``answerTimeout``.
        case short
        /// As long as it takes (a load, an export, a copy): each statement is bounded
        /// by ``answerTimeout``, the step is not.
        case long
    }

    /// Runs `body` on a pooled connection, retrying a lost connection with back-off for
    /// ``patience``; every other failure is a ``StorageError`` naming the database.
    ///
    /// `body` may run more than once: each run is whole (a transaction it opens rolls back
    /// when the connection dies) and every write here is safe to repeat (leases are
    /// checked, a claim takes back the rows its lost answer leased). A `long` step
    /// that hands rows to a caller starts again where the caller's rows stopped.
    ///
    /// A `short` step is bounded as a whole: on a connection the server dropped,
    /// postgres-nio can wait forever for an answer, and the run must not.
    ///
    /// Once the outage has outlasted the patience, or the run was interrupted (SIGINT,
    /// SIGTERM) while the database is away, a step fails at its first lost connection: the
    /// steps that wind a stopped run down each try once instead of waiting anew.
    ///
    /// A server that answers but loses the connection under every try of one step (a
    /// proxy that cuts each connection after so many bytes) would restart it forever, as
    /// each answer ends the outage: the step stops after ``fruitlessTries`` losses spanning
    /// the patience with no progress (`progress`, the cursor of a streaming step, unmoved).
    @discardableResult
    func storage<T: Sendable>(
        _ step: Step = .short, progress: Cursor? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        var delay = 0.05
        var fruitless = FruitlessTries(mark: progress?.seq)
        while true {
            let interrupted = await RunControl.current?.reason == .interrupted
            if let hopeless = givingUp(at: Date(), interrupted: interrupted) { throw hopeless }
            let began = Date()
            do {
                let pool = pool, within = interrupted ? 2 : min(max(patience, 1), 15)
                let answer: T
                switch step {
                case .short:
                    let holder = Holder()
                    answer = try await Self.withTimeout(seconds: interrupted ? min(answerTimeout, 5) : answerTimeout, onTimeout: holder.close) {
                        try await Self.leased(pool, within: within, holder: holder, body)
                    }
                case .long:
                    answer = try await Self.leased(pool, within: within, body)
                }
                let lost = answersToLose.withLock { count in
                    defer { count = max(count - 1, 0) }
                    return count > 0
                }
                if lost { throw Timeout() }
                return answer
            } catch let error where Self.isConnectionLoss(error) {
                let reason = Self.describe(error), now = Date()
                let since = lost(reason, waitedInVain: error is Timeout || error is ConnectionClosed, tryBegan: began, now: now)
                // A try that got somewhere: the next starts soon.
                if fruitless.lost(at: now, progress: progress?.seq) { delay = 0.05 }
                // An outage since before the step's first loss is one outage, which the patience bounds.
                if fruitless.count >= Self.fruitlessTries, since > fruitless.since, now >= fruitless.since + patience {
                    throw StateUnreachable(
                        location: location.display, seconds: now.timeIntervalSince(fruitless.since),
                        reason: "the connection was lost under the same step \(fruitless.count) times, though the server answers; the last time: \(reason)"
                    )
                }
                // Not slept on when the next try would come too late, or the run was interrupted meanwhile.
                let interrupted = await RunControl.current?.reason == .interrupted
                if let hopeless = givingUp(at: now + delay, interrupted: interrupted) { throw hopeless }
                logger.warning("the state database is out of reach; trying again", metadata: ["database": "\(location.display)", "error": "\(reason)"])
                try await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 2)
            } catch let error as PSQLError {
                throw StorageError(path: location.display, message: "state database error: \(Self.describe(error))" + advice(error))
            } catch let error as DecodingError {
                throw StorageError(
                    path: location.display,
                    message: "the state database holds a row this version cannot read (written by another version, or edited by hand): \(error)"
                )
            }
        }
    }

    /// Runs `body` in a transaction on `connection`, committing when it returns.
    ///
    /// Not postgres-nio's `withTransaction`: its `BEGIN` and `COMMIT` are not bounded, and
    /// on a connection the server dropped they can wait forever. Here every statement is.
    func transaction<T: Sendable>(_ connection: PostgresConnection, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await run(connection, "BEGIN")
        do {
            let result = try await body(connection)
            try await run(connection, "COMMIT")
            return result
        } catch {
            if Self.isConnectionLoss(error) {
                // The server rolls back a transaction whose connection ends; a connection
                // that may still be half-open is not handed out again.
                Task { try? await connection.close() }
            } else {
                _ = try? await run(connection, "ROLLBACK")
            }
            throw error
        }
    }

    /// Whether `error` says the database could not be reached or went away (rather than refused a statement).
    static func isConnectionLoss(_ error: any Error) -> Bool {
        if error is Timeout || error is ConnectionClosed || error is PostgresConnector.Unreachable { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection, .poolClosed, .messageDecodingFailure:
            return true
        case .server:
            // 57P01-57P03: the server is shutting down or starting; 08xxx: connection exceptions; 53300: too many connections.
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("57P") || state.hasPrefix("08") || state == "53300"
        default:
            return false
        }
    }

    /// What the server said (its message and SQLSTATE), or what failed on the way: never the statement or its values.
    ///
    /// The server's words are another party's text: cleaned of control characters and cut
    /// to 1,000 characters before they reach a terminal or a log.
    static func describe(_ error: any Error) -> String {
        if error is Timeout { return "no answer in time" }
        if error is ConnectionClosed { return "the connection closed under a statement" }
        if let error = error as? PostgresConnector.Unreachable { return ServiceText.printable(error.description, limit: 1000) }
        guard let error = error as? PSQLError else { return ServiceText.printable(PostgresConnector.describe(error), limit: 1000) }
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].flatMap(ServiceText.code)
            return ServiceText.printable(message, limit: 1000) + (state.map { " (SQLSTATE \($0))" } ?? "")
        }
        let what =
            switch error.code {
            case .serverClosedConnection: "the server closed the connection"
            case .clientClosedConnection: "the connection was closed"
            case .uncleanShutdown: "the connection ended without TLS's close"
            case .messageDecodingFailure: "the server sent a message this client cannot read"
            case .connectionError: "the connection failed"
            default: "\(error.code)"
            }
        guard let underlying = error.underlying, error.code != .messageDecodingFailure else { return what }
        return ServiceText.printable(what + ": " + PostgresConnector.describe(underlying), limit: 1000)
    }

    /// What to do about a refusal that a setting, not the data, explains; empty otherwise.
    func advice(_ error: PSQLError) -> String {
        switch error.serverInfo?[.sqlState] ?? "" {
        case "42501":
            "; the user \(location.user) may not create or change the schema \(location.schema): grant it (GRANT CREATE ON DATABASE \(location.database) TO \(location.user)), or have the schema's owner grant it USAGE and CREATE there"
        case "23505", "40001", "40P01":
            "; another process changed the same rows at the same moment: run the command again (what was done is kept)"
        case "53100":
            "; the database server's disk is full: free space there and run the command again"
        default:
            ""
        }
    }

    // MARK: Schema

    /// Applies the versioned migrations under a lock, so runners that start together apply each once.
    func migrate() async throws {
        try await storage { [self] connection in
            try await transaction(connection) { connection in
                try await run(connection, "SELECT pg_advisory_xact_lock(hashtext($1))", [.text("foundry-batch " + location.schema)])
                try await run(connection, "CREATE SCHEMA IF NOT EXISTS \"\(location.schema)\"")
                try await run(connection, "CREATE TABLE IF NOT EXISTS §migrations (version integer PRIMARY KEY, applied_at double precision NOT NULL)")
                let applied = Set(try await fetch(Int.self, connection, "SELECT version FROM §migrations"))
                for (version, sql) in Self.migrations.enumerated() where !applied.contains(version + 1) {
                    for part in sql { try await run(connection, part) }
                    try await run(
                        connection, "INSERT INTO §migrations(version, applied_at) VALUES ($1, $2)", [.int(version + 1), .double(Date().timeIntervalSince1970)]
                    )
                }
            }
        }
    }

    /// Records the job's name in a new schema, or checks it in an old one.
    func claimSchema(for jobName: String) async throws {
        let stored = try await storage { [self] connection in
            try await run(connection, "INSERT INTO §job(key, value) VALUES ('name', $1) ON CONFLICT (key) DO NOTHING", [.text(jobName)])
            return try await value(String.self, connection, "SELECT value FROM §job WHERE key = 'name'")
        }
        if stored != jobName {
            throw StorageError(
                path: location.display,
                message: "this schema belongs to job '\(stored ?? "?")', not '\(jobName)'; give this job its own schema (?schema=...)"
            )
        }
    }
}

/// The PostgreSQL state database stayed out of reach: the run stops (exit 3) and its rows
/// wait, under leases that expire, for a later run.
public struct StateUnreachable: UserFacingError, Equatable {
    public var location: String
    /// How long it was tried.
    public var seconds: TimeInterval
    public var reason: String
    /// Whether a SIGINT or SIGTERM ended the wait (exit 130) rather than the patience (exit 3).
    public var interrupted = false
    public var exitStatus: ExitStatus { interrupted ? .interrupted : .stopped }

    public init(location: String, seconds: TimeInterval, reason: String, interrupted: Bool = false) {
        self.location = location
        self.seconds = seconds
        self.reason = reason
        self.interrupted = interrupted
    }

    public var description: String {
        if interrupted {
            return "\(location): interrupted while the state database was out of reach (\(reason)); every answer committed is kept, "
                + "and the rows this run held return when their leases expire: run the job again once the database is back."
        }
        let what = "the state database is out of reach (\(reason)), and stayed so for \(Int(seconds)) s"
        return "\(location): \(what); the command stopped. Every answer committed is kept, and the rows a run held return when "
            + "their leases expire: run the job again once the database is back."
    }
}
