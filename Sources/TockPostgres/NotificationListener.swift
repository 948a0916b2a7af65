import Foundation
import Logging
import PostgresNIO
import TockCore

/// LISTENs on channels over a connection of its own and calls `onEvent` for every notification, and with
/// `.listening` after every (re)LISTEN: notifications sent while it was away are lost, so the owner does a
/// catch-up sweep then. Reconnects with backoff when the server goes away; pings now and then, because a
/// listening connection is never idle in the pool's sense and a dead peer would otherwise go unseen.
///
/// After every LISTEN it checks that notifications really arrive: a NOTIFY sent from a second connection must come
/// back within `probeTimeout`. Behind PgBouncer in transaction mode it does not (the LISTEN stays on whichever
/// server connection ran it), and the owner is told with `.notificationsUnavailable` so it polls instead.
public struct NotificationListener: Sendable {
    public enum Event: Sendable, Equatable {
        case listening
        case notification(channel: String, payload: String)
        /// LISTEN/NOTIFY does not round-trip on this connection: poll (every second or so) instead of waiting.
        case notificationsUnavailable
    }

    static let probeChannel = "tock_probe"

    public let settings: ConnectionSettings
    public let channels: [String]
    public let logger: Logger
    public var pingInterval: Duration = .seconds(60)
    public var probeTimeout: Duration = .seconds(2)
    /// Runs on every new connection before LISTEN (a worker takes its session lock here).
    public var onConnect: @Sendable (PostgresConnection) async throws -> Void

    public init(settings: ConnectionSettings, channels: [String], logger: Logger,
                onConnect: @escaping @Sendable (PostgresConnection) async throws -> Void = { _ in }) {
        self.settings = settings
        self.channels = channels + [Self.probeChannel]
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
        let (probeReplies, probes) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(8))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for channel in channels {
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        startedContinuation.yield()
                        for try await notification in notifications {
                            if channel == Self.probeChannel {
                                probes.yield(notification.payload)
                            } else {
                                await onEvent(.notification(channel: channel, payload: notification.payload))
                            }
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
                if try await !self.probe(replies: probeReplies) {
                    logger.warning("""
                        LISTEN/NOTIFY does not work on this connection (PgBouncer in transaction mode?): falling back to a short \
                        poll; connect Tock directly or through session pooling for millisecond wake-ups
                        """)
                    await onEvent(.notificationsUnavailable)
                }
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

extension NotificationListener {
    /// Sends a NOTIFY on the probe channel from a connection of its own and waits up to `probeTimeout` for it to
    /// arrive on the listening one. Silence after a successful send returns false. A send that failed or is still
    /// connecting throws, and the listener reconnects: the send runs in a task of its own that is abandoned, not
    /// awaited, because a connect during a server restart may not heed cancellation.
    func probe(replies: AsyncStream<String>) async throws -> Bool {
        let token = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let sent = Locked<Result<Void, any Error>?>(nil)
        let send = Task { [settings, logger] in
            do {
                let sender = try await PostgresConnection.connect(
                    configuration: try settings.connectionConfiguration(), id: 0, logger: logger)
                defer { Task { try? await sender.close() } }
                _ = try await sender.query("SELECT pg_notify(\(Self.probeChannel), \(token))", logger: logger).collect()
                sent.set(.success(()))
            } catch {
                sent.set(.failure(error))
            }
        }
        let arrived = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await reply in replies where reply == token { return true }
                return false
            }
            group.addTask { [probeTimeout] in
                try? await Task.sleep(for: probeTimeout)
                return false
            }
            let arrived = await group.next() ?? false
            group.cancelAll()
            return arrived
        }
        if arrived { return true }
        send.cancel()
        switch sent.value {
        case .success: return false
        case .failure(let error): throw error
        case nil: throw TockError(.unavailable, "the LISTEN/NOTIFY probe could not connect within \(probeTimeout)")
        }
    }
}
