import Logging
import PostgresNIO
import TockCore
import TockPostgres

/// The NOTIFYs on one channel, seen from a connection of the test's own: how a test waits for what another process
/// announces. A worker's or scheduler's listener, once its LISTEN is in place, sends a NOTIFY on `tock_probe` to
/// check that notifications arrive (NotificationListener): watching that channel tells the test the listener is up.
public final class NotificationWatch: Sendable {
    private let received = Locked<[String]>([])
    private let task = Locked<Task<Void, Never>?>(nil)
    private let connection: PostgresConnection

    private init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Listens on `channel` and returns once the LISTEN is in place.
    public static func start(settings: ConnectionSettings, channel: String,
                             logger: Logger = TestDatabase.logger) async throws -> NotificationWatch {
        let connection = try await PostgresConnection.connect(
            configuration: try settings.connectionConfiguration(), id: 1, logger: logger)
        let watch = NotificationWatch(connection: connection)
        let (listening, listeningContinuation) = AsyncStream<Void>.makeStream()
        watch.task.set(Task {
            _ = try? await connection.listen(on: channel) { notifications in
                // Answered after the LISTEN: from here on, no NOTIFY on the channel is missed.
                _ = try await connection.query("SELECT 1", logger: logger).collect()
                listeningContinuation.yield()
                for try await notification in notifications {
                    watch.received.withLock { $0.append(notification.payload) }
                }
            }
            listeningContinuation.finish()
            try? await connection.close()
        })
        for await _ in listening { break }
        return watch
    }

    /// The payloads received so far, oldest first.
    public var payloads: [String] { received.value }

    /// Closes the connection (which ends the listening task).
    public func stop() async {
        try? await connection.close()
        await task.value?.value
    }
}
