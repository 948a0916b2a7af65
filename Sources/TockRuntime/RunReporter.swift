import Logging
import TockCore
import TockPostgres

/// Tells the database how a worker's runs ended (batched: FinishBatcher) and hands back the runs its shutdown stopped,
/// retrying while the database is unavailable, however long: a result is not dropped because of an outage, and a run
/// never stays running in tock.runs on a worker that lives on without it (an overlap 'skip' job would never run
/// again). Retries end only when the shutdown grace is over: a worker told to stop while its database is away exits
/// in time (systemd kills it 15 s after the default grace). Its unreported runs fail over when its stop is recorded
/// (tock.set_worker_state), or tock.rescue() recovers them as a dead worker's runs.
struct RunReporter: Sendable {
    let database: Database
    let worker: Int64
    let finisher: FinishBatcher
    let clock: AnyClock
    /// The worker's shutdown deadline, nil until a stop begins (WorkerState.shutdownDeadline).
    let shutdownDeadline: @Sendable () -> AnyClock.Instant?

    init(database: Database, worker: Int64, clock: AnyClock,
         shutdownDeadline: @escaping @Sendable () -> AnyClock.Instant?) {
        self.database = database
        self.worker = worker
        self.finisher = FinishBatcher(database: database, worker: worker)
        self.clock = clock
        self.shutdownDeadline = shutdownDeadline
    }

    /// What became of a report.
    enum Report: Equatable {
        /// The database recorded it.
        case recorded
        /// The database answered and changed nothing: the run is no longer running on this worker (tock.rescue()
        /// judged the worker lost and failed the run over, or a user's cancel or delete got there first). A fenced
        /// lease: a late report never overwrites what the run's new holder does.
        case refused
        /// Given up (logged): the run stays held (see WorkerState.unreported).
        case gaveUp
    }

    /// Records how the run ended.
    func finish(_ run: Int64, _ outcome: RunOutcome, logger: Logger) async -> Report {
        await report(logger: logger) { () async throws(TockError) -> Bool in try await finisher.finish(run, outcome) }
    }

    /// Puts a run our own shutdown stopped back in the queue. On `.gaveUp` the heartbeat hands it back, as a run
    /// this worker no longer holds.
    @discardableResult
    func handBack(_ run: Int64, logger: Logger) async -> Report {
        await report(logger: logger) { () async throws(TockError) -> Bool in
            try await database.releaseRun(run, worker: worker)
        }
    }

    /// The log line of a refused report.
    static let refusedMessage = """
        the database refused this run's report and changed nothing: the run is no longer running on this worker \
        (tock.rescue() judged the worker lost and failed the run over, or it was cancelled or deleted)
        """

    /// What a report does after a failed attempt.
    enum NextAttempt: Equatable {
        case retry(after: Duration)
        /// The database is unavailable and the shutdown grace is over (or the worker is exiting): the run stays
        /// running in tock.runs for tock.rescue() to fail over.
        case giveUpAtShutdown
        /// Not an outage (the database refused the report), or the worker is exiting: trying again cannot help.
        case giveUp
    }

    /// The retry rule: only an unavailable database is waited for, with backoff, and never past the shutdown deadline.
    static func afterFailure(_ failure: TockError.Kind, now: AnyClock.Instant, shutdownDeadline: AnyClock.Instant?,
                             cancelled: Bool, backoff: inout RetryBackoff) -> NextAttempt {
        if failure == .unavailable, let shutdownDeadline, now >= shutdownDeadline || cancelled { return .giveUpAtShutdown }
        guard failure == .unavailable, !cancelled else { return .giveUp }
        let pause = backoff.next()
        return .retry(after: shutdownDeadline.map { min(pause, max($0 - now, .milliseconds(1))) } ?? pause)
    }

    /// `call` answers whether the database changed the run.
    private func report(logger: Logger, _ call: @escaping @Sendable () async throws(TockError) -> Bool) async -> Report {
        // At most a second apart: a worker that stops (or learns it was judged lost) gives its last reports 2 s, and
        // a report asleep in a longer pause would miss them. Reports of one moment travel in one batch.
        var backoff = RetryBackoff(maximum: .seconds(1))
        while true {
            let failure: TockError
            do {
                let changed: Bool
                if shutdownDeadline() == nil {
                    changed = try await call()  // bounded by the database's call timeout
                } else {
                    // While the worker stops, abandoned rather than awaited once this task is cancelled (its exit): a
                    // call stuck on a database that is away must not hold the process. Only then: it costs a task.
                    changed = try await awaitAbandoning { () async throws -> Bool in try await call() }
                }
                return changed ? .recorded : .refused
            } catch let error as TockError {
                failure = error
            } catch {
                failure = TockError(.unavailable, "the worker stopped waiting for PostgreSQL")
            }
            switch Self.afterFailure(failure.kind, now: clock.now, shutdownDeadline: shutdownDeadline(),
                                     cancelled: Task.isCancelled, backoff: &backoff) {
            case .giveUpAtShutdown:
                logger.error("""
                    could not report the run before the worker stopped; it fails over (a retry if it has attempts \
                    left) when the worker's stop is recorded, or else when tock.rescue() finds this worker gone, \
                    unless that has happened already (a worker judged lost)
                    """, metadata: ["error": "\(failure.message)"])
                return .gaveUp
            case .giveUp:
                logger.error("could not report the run", metadata: ["error": "\(failure.message)"])
                return .gaveUp
            case .retry(let pause):
                logger.warning("cannot report the run yet; retrying", metadata: ["error": "\(failure.message)"])
                try? await clock.sleep(for: pause)
            }
        }
    }
}
