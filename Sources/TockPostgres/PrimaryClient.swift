import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TockCore

/// The pool of a process whose settings name several servers (`postgres://h1,h2/tock`, or
/// `target_session_attrs=read-write`): its connections go to the server that accepts writes, and follow it when a
/// failover moves it. postgres-nio's client connects to one fixed server, so this keeps a client per server: a call
/// that fails in a way a moved primary explains (unreachable, shutting down, read-only) asks for a look, at most
/// one a second; a look that finds another server accepting writes starts a client for it, and new calls go there.
/// The old client is shut down once the calls under way on it have had their timeout to fail or finish.
public final class PrimaryClient: Sendable {
    private let logger: Logger
    private let configure: @Sendable (ConnectionSettings) -> PostgresClient.Configuration
    private let state: Mutex<State>
    private let lookRequests: AsyncStream<Void>
    private let looks: AsyncStream<Void>.Continuation

    private struct State {
        var settings: ConnectionSettings
        var client: PostgresClient
        var runs: [ObjectIdentifier: Task<Void, Never>] = [:]
        /// The waits before old clients stop, cancelled with run().
        var retirements: [Task<Void, Never>] = []
        var stopped = false
    }

    /// Connections will go to `settings.endpoint` until a look finds otherwise (see `findPrimary`).
    public init(settings: ConnectionSettings, logger: Logger,
                configure: @escaping @Sendable (ConnectionSettings) -> PostgresClient.Configuration) {
        self.logger = logger
        self.configure = configure
        let client = PostgresClient(configuration: configure(settings), backgroundLogger: logger)
        state = Mutex(State(settings: settings, client: client))
        (lookRequests, looks) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The client of the server that accepted writes when last looked at.
    public var client: PostgresClient { state.withLock { $0.client } }

    /// The settings, connecting to that server.
    public var settings: ConnectionSettings { state.withLock { $0.settings } }

    /// A call failed in a way a moved primary explains: look for the server that accepts writes.
    public func suspect() {
        looks.yield(())
    }

    /// The first of `settings.servers` that accepts writes (the current endpoint first: a server that still does
    /// is kept), with what each other said; nil when none does.
    public static func findPrimary(_ settings: ConnectionSettings, logger: Logger) async -> (ConnectionSettings?, [String]) {
        var said: [String] = []
        for server in [settings.endpoint] + settings.servers.filter({ $0 != settings.endpoint }) {
            if Task.isCancelled { break }
            let candidate = settings.at(server)
            switch await acceptsWrites(candidate, logger: logger) {
            case .success(true): return (candidate, said)
            case .success(false): said.append("\(server.displayName): read-only (a standby)")
            case .failure(let error): said.append("\(server.displayName): \(error.message)")
            }
        }
        return (nil, said)
    }

    /// Whether the server of `settings.endpoint` accepts writes, as libpq's read-write check asks.
    static func acceptsWrites(_ settings: ConnectionSettings, logger: Logger) async -> Result<Bool, TockError> {
        do {
            var configuration = try settings.connectionConfiguration()
            configuration.options.connectTimeout = .seconds(2)
            configuration.options.additionalStartupParameters = [("application_name", "tock-find-primary")]
            let connect = configuration
            return .success(try await awaitAbandoning(timeout: .seconds(3), timedOut: {
                TockError(.unavailable, "did not answer within 3 s")
            }) {
                let connection = try await PostgresConnection.connect(configuration: connect, id: 0, logger: logger)
                defer { Task { try? await connection.close() } }
                let rows = try await connection.query("SELECT current_setting('transaction_read_only') = 'off'", logger: logger)
                for try await writable in rows.decode(Bool.self) { return writable }
                return false
            })
        } catch {
            return .failure(TockError(from: error, settings: settings))
        }
    }

    /// Runs the clients, and looks for the primary when asked, until cancelled or a graceful shutdown.
    public func run() async {
        await cancelWhenGracefulShutdown {
            await withTaskCancellationHandler {
                // The first client; look() starts the others as it makes them.
                self.state.withLock { state in
                    guard !state.stopped else { return }
                    let first = state.client
                    state.runs[ObjectIdentifier(first)] = Task { await first.run() }
                }
                var lastLook: ContinuousClock.Instant?
                for await _ in self.lookRequests {
                    if let lastLook, ContinuousClock.now - lastLook < .seconds(1) {
                        try? await Task.sleep(until: lastLook + .seconds(1))
                    }
                    if Task.isCancelled { break }
                    lastLook = .now
                    await self.look()
                }
            } onCancel: {
                self.looks.finish()
            }
        }
        let (runs, retirements) = state.withLock { state in
            state.stopped = true
            return (Array(state.runs.values), state.retirements)
        }
        retirements.forEach { $0.cancel() }
        runs.forEach { $0.cancel() }
        for run in runs { await run.value }
    }

    private func look() async {
        let current = settings
        let (found, said) = await Self.findPrimary(current, logger: logger)
        guard let found else {
            if !Task.isCancelled {
                logger.warning("no server accepts writes yet; looking again when a call fails", metadata: [
                    "servers": "\(said.joined(separator: "; "))"])
            }
            return
        }
        guard found.endpoint != current.endpoint else { return }
        // Running before calls reach it.
        let client = PostgresClient(configuration: configure(found), backgroundLogger: logger)
        let previous: PostgresClient? = state.withLock { state in
            guard !state.stopped else { return nil }
            state.runs[ObjectIdentifier(client)] = Task { await client.run() }
            let previous = state.client
            state.client = client
            state.settings = found
            // Calls under way on the old server fail or finish within their timeout; then its pool stops.
            state.retirements.append(Task { [self] in
                try? await Task.sleep(for: .seconds(35))
                self.state.withLock { $0.runs.removeValue(forKey: ObjectIdentifier(previous)) }?.cancel()
            })
            return previous
        }
        guard previous != nil else { return }
        logger.warning("PostgreSQL's primary moved: new connections go to the server that accepts writes", metadata: [
            "primary": "\(found.endpoint.displayName)", "was": "\(current.endpoint.displayName)"])
    }
}

extension PrimaryClient: Service {}
