import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// The listener's check that notifications arrive, on a loaded machine: a check that could not send its NOTIFY, or
/// whose NOTIFY came back late, must not cost the LISTEN connection (a worker's session lock lives on it) nor leave
/// its owner polling for good.
@Suite("LISTEN/NOTIFY check under load")
struct NotificationListenerTests {
    /// A listener on `settings` with its events and the backend pid of each connection it made.
    final class Recorded: Sendable {
        let events = Locked<[String]>([])
        let backends = Locked<[Int32]>([])
    }

    func start(_ listener: NotificationListener, _ recorded: Recorded,
               onEvent: @escaping @Sendable (NotificationListener.Event) -> Void = { _ in }) -> Task<Void, Never> {
        Task {
            await listener.run { event in
                switch event {
                case .listening: recorded.events.withLock { $0.append("listening") }
                case .notificationsUnavailable: recorded.events.withLock { $0.append("unavailable") }
                case .notification: return
                }
                onEvent(event)
            }
        }
    }

    func makeListener(_ settings: ConnectionSettings, _ recorded: Recorded) -> NotificationListener {
        NotificationListener(settings: settings, channels: ["tock_runs"], logger: TestDatabase.logger) { connection in
            let pid = try await connection.query("SELECT pg_backend_pid()", logger: TestDatabase.logger).decode(Int32.self).all()[0]
            recorded.backends.withLock { $0.append(pid) }
        }
    }

    // The listening backend is stopped with SIGSTOP, so the server must be this machine's and ours to signal.
    @Test("a NOTIFY that comes back late makes the owner poll, and the next check on the same connection ends the polling",
          .enabled(if: TestDatabase.cluster != nil))
    func lateNotificationEndsPolling() async throws {
        try await TestDatabase.withFresh { _, settings in
            let recorded = Recorded()
            var listener = makeListener(settings, recorded)
            listener.probeTimeout = .milliseconds(500)
            listener.probeRecheck = .milliseconds(300)
            // A stopped backend delivers nothing: the check's NOTIFY waits in the queue, as on a machine too busy to
            // deliver it within the timeout. It is let go once the owner has been told to poll.
            let task = start(listener, recorded) { event in
                guard let backend = recorded.backends.value.first else { return }
                switch event {
                case .listening where recorded.events.value.count == 1: _ = kill(pid_t(backend), SIGSTOP)
                case .notificationsUnavailable: _ = kill(pid_t(backend), SIGCONT)
                default: break
                }
            }
            defer {
                task.cancel()
                if let backend = recorded.backends.value.first { _ = kill(pid_t(backend), SIGCONT) }
            }
            let settled = try await eventually(timeout: .seconds(30)) { recorded.events.value.count >= 3 }
            #expect(settled)
            #expect(recorded.events.value == ["listening", "unavailable", "listening"])
            #expect(recorded.backends.value.count == 1, "the same connection throughout: \(recorded.backends.value)")
        }
    }

    @Test("a check that cannot connect to send its NOTIFY keeps the LISTEN connection and tries again")
    func unsentCheckKeepsTheConnection() async throws {
        try await TestDatabase.withFresh { database, settings in
            // A role allowed one connection: the listener's. The check's own connection is refused until the limit
            // is lifted.
            let role = "tock_t_listener_\(getpid())"
            _ = try await database.client.query(PostgresQuery(unsafeSQL: """
                DO $$ BEGIN CREATE ROLE \(role) LOGIN CONNECTION LIMIT 1 PASSWORD '\(TestDatabase.rolePassword)';
                EXCEPTION WHEN duplicate_object THEN
                    ALTER ROLE \(role) CONNECTION LIMIT 1 PASSWORD '\(TestDatabase.rolePassword)';
                END $$
                """)).collect()
            var limited = settings
            limited.username = role
            limited.password = TestDatabase.rolePassword
            let recorded = Recorded()
            var listener = makeListener(limited, recorded)
            // Also the first wait before a check is tried again. Not shorter: it is as long as a check that did
            // connect has for its NOTIFY to come back (2 s in production), which a loaded machine can take.
            listener.probeTimeout = .seconds(1)
            let task = start(listener, recorded)
            defer { task.cancel() }
            #expect(try await eventually { recorded.events.value == ["listening"] })
            // Refused checks, tried again after 1, 2, 4 s, …: the connection stays, the owner is told nothing.
            try await Task.sleep(for: .seconds(3.5))
            #expect(recorded.events.value == ["listening"])
            #expect(recorded.backends.value.count == 1, "reconnected: \(recorded.backends.value)")
            // Once the check can connect, it succeeds on that same connection: still nothing to tell.
            _ = try await database.client.query(PostgresQuery(unsafeSQL: "ALTER ROLE \(role) CONNECTION LIMIT -1")).collect()
            try await Task.sleep(for: .seconds(6))
            #expect(recorded.events.value == ["listening"])
            #expect(recorded.backends.value.count == 1)
            task.cancel()
            _ = await task.value
            _ = try? await database.client.query(PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(role)")).collect()
        }
    }
}
