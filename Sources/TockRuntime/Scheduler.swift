import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TockCore
import TockMetrics
import TockPostgres

/// Calls `tock.tick()` when the next job is due, and sleeps until then: a NOTIFY on tock_jobs (a job created,
/// edited or resumed) wakes it to re-plan. Any number of schedulers may run; the SQL makes each fire time one run.
public final class Scheduler: Service, Sendable {
    /// What the scheduler did, for tests (see `testSignals`).
    public enum Signal: Sendable, Equatable {
        /// Notifications are listened for (again); `notificationsUnavailable`: planning every second instead.
        case listening
        case notificationsUnavailable
        /// A tick enqueued what was due; `next`: the next fire time it knows of (nil: none).
        case ticked(next: Date?)
        case tickFailed(String)
        /// A look for dead workers' runs, and how many it put back.
        case rescued(Int)
        /// A purge of finished runs past the retention, and how many it removed.
        case purged(Int)
    }

    let database: Database
    let listener: NotificationListener
    let logger: Logger
    /// The longest sleep, a safety net for a lost notification.
    let sweepInterval: Duration
    /// How often `tock.rescue()` looks for dead workers; with a worker's 1 s heartbeat, a killed worker's runs
    /// are back in the queue within about rescueInterval + 2 s.
    let rescueInterval: Duration
    /// How often finished runs older than the retention (tock.config) are purged, in small batches.
    let purgeInterval: Duration
    /// Fire times are enqueued this far ahead, held until due (tock.tick's p_lookahead): the tick's own cost
    /// falls before the fire time, and at the fire time the workers (woken by the timer of their delayed run)
    /// only claim.
    let lookahead: Duration
    let metrics: TockMetrics
    /// What sweeps, rescues and purges are timed on: ContinuousClock but in tests.
    let clock: AnyClock
    let wake: WakeSignal
    /// Set while notifications cannot be relied on (PgBouncer in transaction mode): plan at least every second.
    let polling = Atomic<Bool>(false)
    /// Off (and free) until a test subscribes.
    public let testSignals = TestSignals<Signal>()

    public init(database: Database, settings: ConnectionSettings, sweepInterval: Duration = .seconds(60),
                rescueInterval: Duration = .seconds(1), purgeInterval: Duration = .seconds(60),
                lookahead: Duration = .seconds(1), metrics: TockMetrics = TockMetrics(),
                clock: some Clock<Duration> = ContinuousClock(), logger: Logger) {
        self.database = database
        var listener = NotificationListener(
            settings: settings, channels: ["tock_jobs"], logger: logger,
            onConnect: { connection in
                // Held while this process lives: tock.schedulers_alive() counts the holders (health, stats).
                _ = try await connection.query("SELECT pg_advisory_lock_shared(tock.scheduler_lock_key(), 0)",
                                               logger: logger).collect()
            })
        listener.follow = database.primary
        self.listener = listener
        self.sweepInterval = sweepInterval
        self.rescueInterval = rescueInterval
        self.purgeInterval = purgeInterval
        self.lookahead = lookahead
        self.metrics = metrics
        self.clock = AnyClock(clock)
        self.wake = WakeSignal(clock: self.clock)
        self.logger = logger
    }

    public func run() async throws {
        logger.info("scheduler started")
        // Taken before anything can signal that the scheduler runs: a test that moves a manual clock once told is
        // sure to reach the first rescue (see WakeSignal.wait(until:)).
        let firstRescue = clock.now + rescueInterval
        await withDiscardingTaskGroup { group in
            group.addTask { [listener, wake] in
                await listener.run { event in
                    switch event {
                    case .listening:
                        self.polling.store(false, ordering: .relaxed)
                        self.testSignals.send(.listening)
                    case .notificationsUnavailable:
                        self.polling.store(true, ordering: .relaxed)
                        self.testSignals.send(.notificationsUnavailable)
                    case .notification: break
                    }
                    wake.signal()
                }
            }
            group.addTask { await cancelWhenGracefulShutdownOrCancelled { await self.rescueLoop(first: firstRescue) } }
            group.addTask { await cancelWhenGracefulShutdownOrCancelled { await self.purgeLoop() } }
            await cancelWhenGracefulShutdownOrCancelled { await self.loop() }
            group.cancelAll()
        }
        logger.info("scheduler stopped")
    }

    /// Looks every `rescueInterval` after the last look ended; each next look is planned before the signal of the
    /// last, so a test that moves a manual clock once told reaches it.
    private func rescueLoop(first: AnyClock.Instant) async {
        var next = first
        while !Task.isCancelled {
            try? await clock.sleep(until: next)
            let rescued: Int?
            do {
                rescued = try await database.rescue()
            } catch {
                logger.debug("rescue failed", metadata: ["error": "\(error.message)"])
                rescued = nil
            }
            next = clock.now + rescueInterval
            if let rescued {
                if rescued > 0 {
                    metrics.rescued(rescued)
                    logger.warning("rescued runs of lost workers", metadata: ["runs": "\(rescued)"])
                }
                testSignals.send(.rescued(rescued))
            }
        }
    }

    /// History retention: one small batch at a time with a pause between, so purging never competes with claims
    /// for long; a backlog (the first purge after a retention change) drains over a few minutes.
    private func purgeLoop() async {
        while !Task.isCancelled {
            var total = 0
            do {
                while !Task.isCancelled {
                    let purged = try await database.purgeHistory()
                    total += purged
                    if purged == 0 { break }
                    metrics.purged(purged)
                    try await clock.sleep(for: .milliseconds(50))
                }
                if total > 0 { logger.info("purged finished runs past the retention", metadata: ["runs": "\(total)"]) }
                testSignals.send(.purged(total))
            } catch {
                logger.debug("purge failed", metadata: ["error": "\(error)"])
            }
            try? await clock.sleep(for: purgeInterval)
        }
    }

    private func loop() async {
        var backoff = RetryBackoff(initial: .milliseconds(200))
        while !Task.isCancelled {
            do {
                let next = try await database.tick(lookahead: lookahead)
                metrics.ticked()
                backoff.reset()
                let longest = polling.load(ordering: .relaxed) ? Duration.seconds(1) : sweepInterval
                // The next tick: at the next fire time, at most `longest` from now; at once when it is due already.
                // A millisecond late rather than early: an early tick finds nothing due and sleeps again.
                var wakeAt: AnyClock.Instant? = clock.now + longest
                if let delay = next?.timeIntervalSinceNow {
                    wakeAt = delay > 0 ? clock.now + min(Duration.milliseconds(Int64(delay * 1000) + 1), longest) : nil
                }
                testSignals.send(.ticked(next: next))
                if let wakeAt { await wake.wait(until: wakeAt) }
            } catch where Task.isCancelled {
                return  // stopping: the tick under way was abandoned, not failed
            } catch {
                logger.warning("tick failed; retrying", metadata: ["error": "\(error.message)"])
                testSignals.send(.tickFailed(error.message))
                await wake.wait(timeout: backoff.next())
            }
        }
    }
}

/// Runs `body` until it returns, the task is cancelled, or graceful shutdown begins (then `body` is cancelled).
func cancelWhenGracefulShutdownOrCancelled(_ body: @escaping @Sendable () async -> Void) async {
    await withTaskGroup(of: Void.self) { group in
        group.addTask { await body() }
        group.addTask { try? await gracefulShutdown() }
        await group.next()
        group.cancelAll()
    }
}
