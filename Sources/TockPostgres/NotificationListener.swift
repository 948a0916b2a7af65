import Logging
import PostgresNIO
import TockCore

/// LISTENs on channels over a connection of its own and calls `onEvent` for every notification, and with
/// `.listening` after every (re)LISTEN: notifications sent while it was away are lost, so the owner does a
/// catch-up sweep then. Reconnects with backoff when the server goes away; pings now and then, because a
/// listening connection is never idle in the pool's sense and a dead peer would otherwise go unseen.
public struct NotificationListener: Sendable {
    public enum Event: Sendable, Equatable {
        case listening
        case notification(channel: String, payload: String)
    }

    public let settings: ConnectionSettings
    public let channels: [String]
    public let logger: Logger
    public var pingInterval: Duration = .seconds(60)
    /// Runs on every new connection before LISTEN (a worker takes its session lock here).
    public var onConnect: @Sendable (PostgresConnection) async throws -> Void

    public init(settings: ConnectionSettings, channels: [String], logger: Logger,
                onConnect: @escaping @Sendable (PostgresConnection) async throws -> Void = { _ in }) {
        self.settings = settings
        self.channels = channels
        self.logger = logger
        self.onConnect = onConnect
    }

    /// Runs until the task is cancelled.
    public func run(onEvent: @escaping @Sendable (Event) async -> Void) async {
        var backoff = RetryBackoff()
        var connectionID = 0
        while !Task.isCancelled {
            connectionID += 1
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try settings.connectionConfiguration(), id: connectionID, logger: logger)
                backoff.reset()
                do {
                    try await onConnect(connection)
                    try await listen(on: connection, onEvent: onEvent)
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
                logger.warning("LISTEN connection lost; reconnecting", metadata: [
                    "error": "\(TockError(from: error, settings: settings).message)",
                    "retry_in": "\(backoff.current)",
                ])
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    private func listen(on connection: PostgresConnection, onEvent: @escaping @Sendable (Event) async -> Void) async throws {
        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for channel in channels {
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        startedContinuation.yield()
                        for try await notification in notifications {
                            await onEvent(.notification(channel: channel, payload: notification.payload))
                        }
                    }
                    throw TockError(.unavailable, "LISTEN \(channel) ended")
                }
            }
            group.addTask { [channels, pingInterval, logger] in
                // Every LISTEN is written before this query, and the server answers in order: once it returns,
                // notifications can no longer be missed, so now is the moment for the owner's catch-up.
                var count = 0
                for await _ in started {
                    count += 1
                    if count == channels.count { break }
                }
                _ = try await connection.query("SELECT 1", logger: logger).collect()
                logger.debug("listening", metadata: ["channels": "\(channels.joined(separator: ","))"])
                await onEvent(.listening)
                while true {
                    try await Task.sleep(for: pingInterval)
                    _ = try await connection.query("SELECT 1", logger: logger).collect()
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
