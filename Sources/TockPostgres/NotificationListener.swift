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
/// back within `probeTimeout` of its send. Behind PgBouncer in transaction mode it does not (the LISTEN stays on
/// whichever server connection ran it), and the owner is told with `.notificationsUnavailable` so it polls instead;
/// the check is repeated, and when a NOTIFY does come back the owner is told `.listening` again.
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
    /// How long a probe's NOTIFY may take to come back once sent before the owner polls instead.
    public var probeTimeout: Duration = .seconds(2)
    /// How long a probe may take to connect and send its NOTIFY; past it the probe is tried again later.
    public var probeSendTimeout: Duration = .seconds(30)
    /// How often a listener that fell back to polling checks again whether notifications arrive.
    public var probeRecheck: Duration = .seconds(30)
    /// Runs on every new connection before LISTEN (a worker takes its session lock here).
    public var onConnect: @Sendable (PostgresConnection) async throws -> Void
    /// With several servers, the process's follower of the primary: each connection goes to the server it found
    /// accepting writes (LISTEN fails on a standby), and a lost connection asks it to look.
    public var follow: PrimaryClient?

    /// The settings of the server to connect to now.
    private var current: ConnectionSettings { follow?.settings ?? settings }

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
                    configuration: try current.connectionConfiguration(), id: connectionID, logger: logger)
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
                follow?.suspect()
                logger.warning("LISTEN connection lost; reconnecting", metadata: [
                    "error": "\(TockError(from: error, settings: current).message)",
                    "retry_in": "\(backoff.current)",
                ])
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    private func listen(on connection: PostgresConnection, onEvent: @escaping @Sendable (Event) async -> Void) async throws {
        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        // Where a payload on the probe channel goes: to the probe under way, if any.
        let probeReplies = Locked<(@Sendable (String) -> Void)?>(nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for channel in channels {
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        startedContinuation.yield()
                        for try await notification in notifications {
                            if channel == Self.probeChannel {
                                probeReplies.value?(notification.payload)
                            } else {
                                await onEvent(.notification(channel: channel, payload: notification.payload))
                            }
                        }
                    }
                    throw TockError(.unavailable, "LISTEN \(channel) ended")
                }
            }
            group.addTask { [channels, logger] in
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
                try await self.watch(connection, probeReplies: probeReplies, onEvent: onEvent)
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Checks that notifications arrive on `connection` until one does, then pings it now and then; returns only by
    /// throwing, when the connection fails. A check that could not send its NOTIFY (a slow or failed connect)
    /// proves nothing either way: the connection stays, and with it a worker's session lock, and the check is tried
    /// again. One that was sent and did not come back makes the owner poll, and is tried again every
    /// `probeRecheck`: a NOTIFY that was only slow (a loaded machine) ends the polling.
    private func watch(_ connection: PostgresConnection, probeReplies: Locked<(@Sendable (String) -> Void)?>,
                       onEvent: @escaping @Sendable (Event) async -> Void) async throws {
        var delivering = true  // what the owner was last told
        var confirmed = false
        var unsentBackoff = RetryBackoff(initial: probeTimeout, maximum: probeRecheck)
        var lastPing = ContinuousClock.now
        while true {
            var wait = pingInterval
            if !confirmed {
                switch await probe(replies: probeReplies) {
                case .arrived:
                    confirmed = true
                    if !delivering {
                        delivering = true
                        logger.info("LISTEN/NOTIFY works on this connection after all: waiting for notifications again")
                        await onEvent(.listening)
                    }
                case .silent:
                    if delivering {
                        delivering = false
                        logger.warning("""
                            LISTEN/NOTIFY does not work on this connection (PgBouncer in transaction mode?): falling back to a \
                            short poll; connect Tock directly or through session pooling for millisecond wake-ups
                            """)
                        await onEvent(.notificationsUnavailable)
                    }
                    wait = probeRecheck
                case .unsent(let error):
                    try Task.checkCancellation()  // the listener is stopping: nothing to try again
                    wait = unsentBackoff.next()
                    logger.info("the LISTEN/NOTIFY check could not send its NOTIFY; trying again", metadata: [
                        "error": "\(TockError(from: error, settings: current).message)", "retry_in": "\(wait)"])
                }
            }
            try await Task.sleep(for: min(wait, max(lastPing + pingInterval - ContinuousClock.now, .zero)))
            if ContinuousClock.now - lastPing >= pingInterval {
                _ = try await connection.query("SELECT 1", logger: logger).collect()
                lastPing = ContinuousClock.now
            }
        }
    }
}

extension NotificationListener {
    enum ProbeOutcome {
        case arrived
        /// Sent, and not back within `probeTimeout` of the send.
        case silent
        /// Not sent: the connect or the NOTIFY failed, or took longer than `probeSendTimeout`.
        case unsent(any Error)
    }

    private enum ProbeEvent: Sendable {
        case arrived, sent, sendFailed(any Error)
        /// The deadline of that number passed (a cancelled one may still fire: only the current one counts).
        case timedOut(Int)
    }

    /// Sends a NOTIFY on the probe channel from a connection of its own and waits for it on the listening one. The
    /// wait for the reply starts when the send has committed: on a loaded machine the connect alone can take
    /// seconds, and that says nothing about the LISTEN. The send runs in a task of its own that is abandoned, not
    /// awaited, because a connect during a server restart may not heed cancellation.
    func probe(replies: Locked<(@Sendable (String) -> Void)?>) async -> ProbeOutcome {
        let token = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let (events, eventsContinuation) = AsyncStream<ProbeEvent>.makeStream()
        replies.set { payload in if payload == token { eventsContinuation.yield(.arrived) } }
        defer { replies.set(nil) }
        let send = Task { [current, logger] in
            do {
                let sender = try await PostgresConnection.connect(
                    configuration: try current.connectionConfiguration(), id: 0, logger: logger)
                defer { Task { try? await sender.close() } }
                _ = try await sender.query("SELECT pg_notify(\(Self.probeChannel), \(token))", logger: logger).collect()
                eventsContinuation.yield(.sent)
            } catch {
                eventsContinuation.yield(.sendFailed(error))
            }
        }
        var deadlines = 0
        func timer(_ duration: Duration) -> Task<Void, Never> {
            deadlines += 1
            return Task { [deadlines] in
                guard (try? await Task.sleep(for: duration)) != nil else { return }
                eventsContinuation.yield(.timedOut(deadlines))
            }
        }
        var deadline = timer(probeSendTimeout)
        var sent = false
        defer {
            deadline.cancel()
            send.cancel()
            eventsContinuation.finish()
        }
        for await event in events {
            switch event {
            case .arrived:
                return .arrived
            case .sent:
                sent = true
                deadline.cancel()
                deadline = timer(probeTimeout)
            case .sendFailed(let error):
                return .unsent(error)
            case .timedOut(let number) where number == deadlines:
                return sent ? .silent : .unsent(TockError(.unavailable, "the NOTIFY was not sent within \(probeSendTimeout)"))
            case .timedOut:
                continue
            }
        }
        return .unsent(CancellationError())
    }
}
