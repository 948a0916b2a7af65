import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TockCore
import TockMetrics
import TockPostgres

public struct WorkerConfiguration: Sendable {
    /// Scripts run at once; also the most runs one claim takes.
    public var concurrency: Int = ProcessInfo.processInfo.activeProcessorCount
    public var scriptsDirectory: String = "./scripts"
    /// Claims happen on NOTIFY; this slow sweep only catches what a lost notification would leave behind.
    public var sweepInterval: Duration = .seconds(60)
    public var heartbeatInterval: Duration = .seconds(1)
    public var outputCapBytes: Int = 1 << 20
    /// On SIGTERM/SIGINT: how long running scripts may finish before they are stopped and handed back.
    public var shutdownGrace: Duration = .seconds(30)
    public var killGraceSeconds: Double = 5
    /// How often a running script's new output is sent to the database for live viewers (nil: only at the end).
    public var liveOutputInterval: Duration? = .seconds(1)
    /// When LISTEN/NOTIFY does not work (PgBouncer in transaction mode), the claim loop polls this often instead.
    public var pollInterval: Duration = .milliseconds(500)
    /// A run running on this worker in the database that the worker does not hold, this long after its claim, goes
    /// back to the queue at the next heartbeat: a claim that committed but whose answer never came. Longer than
    /// the database's call timeout, after which the worker stops waiting for an answer.
    public var unheldRunsAfter: Duration = .seconds(60)
    /// The tock executable, started as `tock guard-scripts` to stop this worker's scripts if the worker dies (see
    /// ScriptGuard). Nil: no guard (a worker inside another program, as in the unit tests).
    public var guardExecutable: String?
    /// How what a run starts is stopped at its end (see ScriptContainment).
    public var containment: ScriptContainment.Preference = .automatic
    /// The user scripts run as (`--run-as`); nil: the worker's own.
    public var runAs: ScriptCredentials?

    public init() {}
}

/// Claims runs when notified, runs each script in the sandbox, reports how it ended, and heartbeats.
public final class Worker: Service, Sendable {
    /// What a claimed run does instead of running its script; nil (production) runs the script in the sandbox.
    /// A benchmark injects one that finishes at once, to time the claim → finish machinery without processes.
    public typealias RunExecutor = @Sendable (ClaimedRun) async -> RunOutcome

    let database: Database
    let settings: ConnectionSettings
    let configuration: WorkerConfiguration
    let sandbox: ScriptSandbox
    let runner: ScriptRunner
    let logger: Logger
    let executor: RunExecutor?
    let running = Mutex<[Int64: ScriptControl]>([:])
    /// Runs a user cancelled (tock.cancel), as opposed to scripts our own shutdown stops.
    let cancelledByUser = Mutex<Set<Int64>>([])
    let stopping = Atomic<Bool>(false)
    /// When a stop was asked for, plus the shutdown grace: reports stop retrying after it (see `report`).
    let shutdownDeadline = Mutex<ContinuousClock.Instant?>(nil)
    /// Set while notifications cannot be relied on: claims poll every `pollInterval`.
    let polling = Atomic<Bool>(false)
    let wake = WakeSignal()
    /// Set when runs may be waiting that this worker has not tried to claim: a NOTIFY on tock_runs, a (re)connect,
    /// a claim that filled every free slot. A slot that frees claims only then: an ended run NOTIFYs by itself
    /// when it unblocks another (overlap 'queue'), and a delayed run is slept for (next_delayed_run).
    let runsMayWait = Atomic<Bool>(true)
    let registeredID = Atomic<Int64>(0)
    /// Set once the LISTEN connection holds this worker's session lock. Claims wait for it: tock.rescue() sees a
    /// worker's death within seconds only once it has held the lock (before, after 30 s of heartbeat silence), so
    /// every run a worker holds comes back that fast if it dies.
    let sessionLocked = Atomic<Bool>(false)
    let metrics: TockMetrics
    /// Runs whose script has ended and whose result is still being reported: their slots are already free.
    let reporting = Atomic<Int>(0)
    /// The runs among those (and any whose report failed for good) that the database has not recorded as ended:
    /// this worker still holds them (see `heldRuns`).
    let endedUnreported = Mutex<Set<Int64>>([])
    /// Claims sent and not yet answered (or given up on): the worker may hold their runs in a moment.
    let claimsUnderWay = Atomic<Int>(0)
    /// Started when the worker runs (see WorkerConfiguration.guardExecutable).
    let scriptGuard = Mutex<ScriptGuard?>(nil)
    /// What every script inherits from the worker's environment, read once.
    let baseEnvironment: [String: String]
    /// The error of the claims while they keep failing (nil once one works): the heartbeat reports it, so health
    /// shows a worker that cannot start anything.
    let claimError = Mutex<String?>(nil)
    /// One look at the cancel requests at a time, and one more if asked meanwhile: any login may send NOTIFY
    /// tock_cancel, and a flood must not become a queue of queries in front of the notifications.
    let cancelCheck = Mutex<(running: Bool, again: Bool)>((false, false))

    public init(database: Database, settings: ConnectionSettings, configuration: WorkerConfiguration,
                metrics: TockMetrics = TockMetrics(), executor: RunExecutor? = nil, logger: Logger) throws(TockError) {
        guard (1...1000).contains(configuration.concurrency) else {
            throw TockError(.invalidInput, field: "concurrency", "concurrency \(configuration.concurrency) is out of range 1-1000")
        }
        // This worker's secret (see WorkerLease): its copy of the database presents it on every worker call.
        var database = database
        database.leaseToken = WorkerLease.newToken()
        self.database = database
        self.configuration = configuration
        self.sandbox = try ScriptSandbox(directory: configuration.scriptsDirectory)
        self.runner = ScriptRunner(outputCapBytes: configuration.outputCapBytes,
                                   killGraceSeconds: configuration.killGraceSeconds,
                                   containment: try ScriptContainment.make(configuration.containment),
                                   credentials: configuration.runAs)
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.logger = logger
        let inherited = ProcessInfo.processInfo.environment
        var environment: [String: String] = [:]
        for key in ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
            if let value = inherited[key] { environment[key] = value }
        }
        environment["PATH"] = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        if let user = configuration.runAs {
            environment["HOME"] = user.home
            environment["USER"] = user.user
            environment["LOGNAME"] = user.user
        }
        self.baseEnvironment = environment
    }

    /// This worker's id in tock.workers, once registered (0 before).
    public var id: Int64 { registeredID.load(ordering: .acquiring) }

    public func run() async throws {
        let id = try await database.registerWorker(
            host: ProcessInfo.processInfo.hostName, pid: Int(getpid()), concurrency: configuration.concurrency,
            scriptsDirectory: sandbox.root, version: TockVersion.current)
        registeredID.store(id, ordering: .releasing)
        let logger = {
            var logger = self.logger
            logger[metadataKey: "worker"] = "\(id)"
            return logger
        }()
        let scriptGuard = configuration.guardExecutable.flatMap {
            ScriptGuard.start(executable: $0, killGraceSeconds: configuration.killGraceSeconds,
                              cgroup: runner.containment.cgroupPath, logger: logger)
        }
        self.scriptGuard.withLock { $0 = scriptGuard }
        defer { scriptGuard?.stop() }
        logger.info("worker started", metadata: [
            "concurrency": "\(configuration.concurrency)", "scripts_dir": "\(sandbox.root)",
            "script_guard": "\(scriptGuard.map { String($0.pid) } ?? "none")",
            "containment": "\(runner.containment.mode.rawValue): \(runner.containment.detail)",
            "scripts_run_as": "\(configuration.runAs?.user ?? "the worker's user (uid \(getuid()))")"])

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                let listener = NotificationListener(
                    settings: settings, channels: ["tock_runs", "tock_cancel"], logger: logger,
                    onConnect: { connection in
                        // Held while this process lives: tock.rescue() sees at once when it does not (a reconnect
                        // takes it again).
                        _ = try await connection.query("SELECT tock.hold_worker_session(\(id), \(self.database.leaseToken))",
                                                       logger: logger).collect()
                        if !self.sessionLocked.exchange(true, ordering: .acquiringAndReleasing) { self.wake.signal() }
                    })
                group.addTask {
                    await listener.run { event in await self.handle(event, worker: id, logger: logger) }
                }
                group.addTask { await self.heartbeatLoop(id: id, logger: logger) }
                await self.claimLoop(id: id, group: &group, logger: logger)
                await self.drain(id: id, logger: logger)
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.startShutdownClock()
            self.stopping.store(true, ordering: .releasing)
            self.wake.signal()
        }
        try? await shutdownDatabase.setWorkerState(worker: id, state: "stopped")
        logger.info("worker stopped")
    }

    private func claimLoop(id: Int64, group: inout DiscardingTaskGroup, logger: Logger) async {
        let finisher = FinishBatcher(database: database, worker: id)
        var backoff = RetryBackoff(initial: .milliseconds(200))
        // After a full claim more runs are waiting: claim again once half the slots are free, not per freed slot,
        // so claims stay large under load (one statement and commit per batch). An idle worker claims at once.
        var queueHasMore = false
        // The next claim whatever happens: the safety sweep, the poll without notifications, or a delayed run.
        var nextClaim = ContinuousClock.now
        while !stopping.load(ordering: .acquiring) && !Task.isCancelled {
            let free = configuration.concurrency - running.withLock { $0.count }
            let slotsToClaim = sessionLocked.load(ordering: .acquiring) && free > 0
                && (!queueHasMore || free >= max(1, configuration.concurrency / 2) || free == configuration.concurrency)
            if slotsToClaim && (ContinuousClock.now >= nextClaim || runsMayWait.load(ordering: .acquiring)) {
                do {
                    // Cleared before the claim: a NOTIFY that arrives during it sets it again.
                    runsMayWait.store(false, ordering: .releasing)
                    let claimSent = ContinuousClock.now
                    let claimed = try await claim(worker: id, max: free)
                    claimError.withLock { $0 = nil }
                    queueHasMore = claimed.count == free
                    backoff.reset()
                    for (run, control) in claimed {
                        group.addTask { await self.execute(run, worker: id, control: control, finisher: finisher, logger: logger) }
                    }
                    var sleep = polling.load(ordering: .relaxed) ? configuration.pollInterval : configuration.sweepInterval
                    if queueHasMore {
                        // A full batch may have left more behind: claim again as soon as a slot frees.
                        runsMayWait.store(true, ordering: .releasing)
                    } else if let delayed = try await database.nextDelayedRun(since: ContinuousClock.now - claimSent) {
                        // Runs waiting out a retry backoff (or enqueued ahead of their fire time) send no NOTIFY
                        // when they become due: claim then. Asked as of the claim, not now: a run that came due
                        // in between (a scheduled run enqueued just ahead of its fire time, on a busy machine) was
                        // left to the 60 s sweep.
                        sleep = min(sleep, .milliseconds(max(Int64(delayed.timeIntervalSinceNow * 1000) + 1, 1)))
                    }
                    nextClaim = ContinuousClock.now + sleep
                    if queueHasMore { continue }
                } catch {
                    logger.warning("claim failed; retrying", metadata: ["error": "\(error.message)"])
                    claimError.withLock { $0 = error.message }
                    runsMayWait.store(true, ordering: .releasing)
                    await wake.wait(timeout: backoff.next())
                    continue
                }
            }
            // Without slots to claim into, only a freed slot or the session lock (which signal) can change that.
            await wake.wait(timeout: slotsToClaim ? max(nextClaim - ContinuousClock.now, .milliseconds(1)) : configuration.sweepInterval)
        }
    }

    /// Claims up to `max` runs and records each as running here before the claim counts as answered: while one is
    /// under way, the heartbeat does not say which runs this worker holds.
    private func claim(worker id: Int64, max: Int) async throws(TockError) -> [(ClaimedRun, ScriptControl)] {
        claimsUnderWay.add(1, ordering: .sequentiallyConsistent)
        defer { claimsUnderWay.subtract(1, ordering: .sequentiallyConsistent) }
        return try await database.claimRuns(worker: id, max: max).map { run in
            let control = ScriptControl()
            metrics.runsInFlight(running.withLock { $0[run.runId] = control; return $0.count })
            return (run, control)
        }
    }

    /// Every run this worker holds: scripts running, and ended ones the database has not recorded. Nil while a claim
    /// is under way. A claim sent after this look starts its runs later than it, so the database's margin
    /// (`unheldRunsAfter` since the claim) keeps them out of what the heartbeat hands back.
    private func heldRuns() -> [Int64]? {
        guard claimsUnderWay.load(ordering: .sequentiallyConsistent) == 0 else { return nil }
        // Running first: an ended run joins endedUnreported before it leaves running, so it is in one of the two.
        let scripts = running.withLock { Array($0.keys) }
        return scripts + endedUnreported.withLock { Array($0) }
    }

    /// The database for the calls a stopping worker makes besides its reports: when the database is away, each
    /// fails after 2 s rather than the usual call timeout, so they do not add 20 s to the exit.
    private var shutdownDatabase: Database {
        var database = database
        database.callTimeout = min(database.callTimeout, .seconds(2))
        return database
    }

    /// The shutdown deadline, set by whichever comes first: the stop request, or drain() when the worker stops
    /// because it is no longer registered as alive.
    @discardableResult
    private func startShutdownClock() -> ContinuousClock.Instant {
        shutdownDeadline.withLock { deadline in
            let set = deadline ?? ContinuousClock.now + configuration.shutdownGrace
            deadline = set
            return set
        }
    }

    /// Graceful shutdown: no new claims; running scripts get the grace period, then are stopped and handed back.
    private func drain(id: Int64, logger: Logger) async {
        let deadline = startShutdownClock()
        try? await shutdownDatabase.setWorkerState(worker: id, state: "stopping")
        while !running.withLock({ $0.isEmpty }) && ContinuousClock.now < deadline {
            await wake.wait(timeout: .milliseconds(200))
        }
        let left = running.withLock { $0 }
        if !left.isEmpty {
            logger.warning("shutdown grace over; stopping scripts and handing their runs back",
                           metadata: ["runs": "\(left.keys.sorted())"])
            left.values.forEach { $0.cancel() }
            while !running.withLock({ $0.isEmpty }) {
                await wake.wait(timeout: .milliseconds(200))
            }
        }
        // Scripts that ended are reported (or handed back) before the worker says it stopped, but a database that
        // is away does not hold the exit past the grace (and the moments stopped scripts took to die): report()
        // gives up then, and when the task group is cancelled, on a call still under way; it logs each run it
        // gave up on.
        let reportsDeadline = max(deadline, ContinuousClock.now) + .seconds(2)
        while reporting.load(ordering: .acquiring) > 0 && ContinuousClock.now < reportsDeadline {
            await wake.wait(timeout: .milliseconds(200))
        }
    }

    private func handle(_ event: NotificationListener.Event, worker: Int64, logger: Logger) async {
        switch event {
        case .notification(channel: "tock_cancel", let payload):
            // A hint, not an order: any login may NOTIFY tock_cancel. Only a run this worker holds makes it ask the
            // database, and only a run the database says is to be cancelled is signalled.
            guard let run = Int64(payload), running.withLock({ $0[run] != nil }) else { return }
            checkCancelRequests(worker: worker, logger: logger)
        case .notification:
            runsMayWait.store(true, ordering: .releasing)
            wake.signal()
        case .notificationsUnavailable:
            polling.store(true, ordering: .relaxed)
            runsMayWait.store(true, ordering: .releasing)
            wake.signal()
        case .listening:
            polling.store(false, ordering: .relaxed)
            // Anything that happened while we were not listening: runs to claim, cancels to carry out.
            runsMayWait.store(true, ordering: .releasing)
            wake.signal()
            checkCancelRequests(worker: worker, logger: logger)
        }
    }

    /// Looks at the cancel requests beside the notifications, never in their way (see `cancelCheck`).
    private func checkCancelRequests(worker: Int64, logger: Logger) {
        let start = cancelCheck.withLock { state -> Bool in
            if state.running { state.again = true; return false }
            state.running = true
            return true
        }
        guard start else { return }
        Task {
            repeat {
                await cancelRequested(worker: worker, logger: logger)
            } while cancelCheck.withLock { state -> Bool in
                if state.again { state.again = false; return true }
                state.running = false
                return false
            }
        }
    }

    /// Stops the scripts of the runs the database says were cancelled (tock.cancel sets cancel_requested_at).
    private func cancelRequested(worker: Int64, logger: Logger) async {
        do {
            for run in try await database.cancelRequests(worker: worker) { cancel(run, logger: logger) }
        } catch {
            logger.warning("could not read the cancel requests", metadata: ["error": "\(error.message)"])
        }
    }

    private func cancel(_ run: Int64, logger: Logger) {
        guard let control = running.withLock({ $0[run] }) else { return }
        cancelledByUser.withLock { _ = $0.insert(run) }
        logger.info("cancelling", metadata: ["run": "\(run)"])
        control.cancel()
    }

    private func heartbeatLoop(id: Int64, logger: Logger) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.heartbeatInterval)
            if Task.isCancelled { return }
            // With each beat, whether or not the database answers: a guard killed on its own is replaced within one.
            scriptGuard.withLock { $0 }?.restartIfGone(logger: logger)
            do {
                if try await database.heartbeat(worker: id, held: heldRuns(), unheldAfter: configuration.unheldRunsAfter,
                                                claimError: claimError.withLock { $0 }) == nil {
                    logger.error("this worker is no longer registered as alive in tock.workers; stopping")
                    stopping.store(true, ordering: .releasing)
                    wake.signal()
                    return
                }
            } catch where !Task.isCancelled {
                logger.warning("heartbeat failed", metadata: ["error": "\(error.message)"])
            } catch {
                return  // the worker is exiting
            }
        }
    }

    private func execute(_ run: ClaimedRun, worker: Int64, control: ScriptControl, finisher: FinishBatcher,
                         logger: Logger) async {
        var logger = logger
        logger[metadataKey: "run"] = "\(run.runId)"
        logger[metadataKey: "job"] = "\(run.jobName)"
        let started = ContinuousClock.now
        metrics.runStarted(job: run.jobName, trigger: run.trigger, scheduledFor: run.scheduledFor)
        let ran: RunOutcome?
        if let executor {
            ran = await executor(run)
        } else {
            ran = await runScript(run, worker: worker, control: control, logger: logger)
        }
        // The script has ended: its slot takes the next run while this one's result is reported (batched with
        // others that end meanwhile), so a slot never waits on a commit. drain() waits for the reports.
        reporting.add(1, ordering: .releasing)
        endedUnreported.withLock { _ = $0.insert(run.runId) }
        metrics.runsInFlight(running.withLock { $0.removeValue(forKey: run.runId); return $0.count })
        cancelledByUser.withLock { _ = $0.remove(run.runId) }
        wake.signal()
        defer {
            reporting.subtract(1, ordering: .releasing)
            wake.signal()
        }
        guard let outcome = ran else {
            // Handed back to the queue (or, if that failed, left for the heartbeat to hand back).
            endedUnreported.withLock { _ = $0.remove(run.runId) }
            return
        }
        // A report that failed for good keeps the run held, so the heartbeat never hands back a run whose script
        // ran: it stays running here until rescue's orphan rule, or this worker's end, fails it over.
        guard await report(logger: logger, { () async throws(TockError) -> Bool in try await finisher.finish(run.runId, outcome) })
        else { return }
        endedUnreported.withLock { _ = $0.remove(run.runId) }
        metrics.runFinished(job: run.jobName, status: outcome.status.rawValue, duration: ContinuousClock.now - started)
        logger.info("run finished", metadata: [
            "status": "\(outcome.status.rawValue)", "exit_code": "\(outcome.exitCode.map(String.init) ?? "-")"])
    }

    /// Runs the script in the sandbox and says how it ended; nil when our own shutdown stopped it and the run went
    /// back to the queue.
    private func runScript(_ run: ClaimedRun, worker: Int64, control: ScriptControl, logger: Logger) async -> RunOutcome? {
        do {
            // Opened once, beneath the scripts directory: the open file is what runs.
            let file = try sandbox.open(run.script)
            let path = file.path
            // A #! script runs from the open file, so its $0 is /dev/fd/3: this says where it is.
            var environment = environment(for: run)
            environment["TOCK_SCRIPT"] = path
            // The process first, then the log line and the live-output task: they are not on the path to its start.
            let script = try await runner.start(
                script: file, arguments: run.args, environment: environment,
                workingDirectory: sandbox.root, timeoutSeconds: run.timeoutSeconds, control: control,
                scriptGuard: scriptGuard.withLock { $0 })
            logger.info("run started", metadata: [
                "script": "\(path)", "pid": "\(script.pid)", "attempt": "\(run.attempt)", "trigger": "\(run.trigger)"])
            let live = configuration.liveOutputInterval.map { [logger] interval in
                Task { await self.streamOutput(run.runId, worker: worker, control: control, every: interval, logger: logger) }
            }
            let result = await script.wait()
            // Stopped before the final report overwrites the output.
            live?.cancel()
            await live?.value
            let userCancelled = cancelledByUser.withLock { $0.contains(run.runId) }
            if result.cancelled && !userCancelled && stopping.load(ordering: .acquiring) {
                // Stopped by our own shutdown, not by a user: the run goes back to the queue.
                await report(logger: logger) { () async throws(TockError) -> Bool in try await self.database.releaseRun(run.runId, worker: worker) }
                logger.info("handed back")
                return nil
            }
            return result.outcome(timeoutSeconds: run.timeoutSeconds)
        } catch {
            return RunOutcome(status: .failed, error: error.message)
        }
    }

    /// Sends a running script's new output to the database every `interval`, so the portal can show it live.
    private func streamOutput(_ run: Int64, worker: Int64, control: ScriptControl, every interval: Duration,
                              logger: Logger) async {
        var reportedBytes = 0
        while (try? await Task.sleep(for: interval)) != nil {
            guard let output = control.outputSoFar, output.totalBytes != reportedBytes else { continue }
            do {
                guard try await database.reportOutput(run, worker: worker, output: output) else { return }
                reportedBytes = output.totalBytes
            } catch {
                logger.debug("could not send live output", metadata: ["error": "\(error.message)"])
            }
        }
    }

    /// Reports to the database, retrying while it is unavailable, however long: a result is not dropped because
    /// of an outage, and a run never stays running in tock.runs on a worker that lives on without it (an overlap
    /// 'skip' job would never run again). Retries end only when the shutdown grace is over: a worker told to stop
    /// while its database is away exits in time (systemd kills it 15 s after the default grace). Its unreported
    /// runs stay running on it, and tock.rescue() recovers them as a dead worker's runs.
    /// Returns whether the database got the report (false: given up, and logged).
    @discardableResult
    private func report(logger: Logger, _ call: @escaping @Sendable () async throws(TockError) -> Bool) async -> Bool {
        var backoff = RetryBackoff()
        while true {
            let failure: TockError
            do {
                if shutdownDeadline.withLock({ $0 }) == nil {
                    _ = try await call()  // bounded by the database's call timeout
                } else {
                    // While the worker stops, abandoned rather than awaited once this task is cancelled (its exit):
                    // a call stuck on a database that is away must not hold the process. Only then: it costs a task.
                    _ = try await awaitAbandoning { () async throws -> Bool in try await call() }
                }
                return true
            } catch let error as TockError {
                failure = error
            } catch {
                failure = TockError(.unavailable, "the worker stopped waiting for PostgreSQL")
            }
            let shutdown = shutdownDeadline.withLock { $0 }
            if failure.kind == .unavailable, let shutdown, ContinuousClock.now >= shutdown || Task.isCancelled {
                logger.error("""
                    could not report the run before the shutdown grace ended; it stays running in tock.runs until \
                    tock.rescue() finds this worker gone and fails it over (a retry if it has attempts left)
                    """, metadata: ["error": "\(failure.message)"])
                return false
            }
            guard failure.kind == .unavailable, !Task.isCancelled else {
                logger.error("could not report the run", metadata: ["error": "\(failure.message)"])
                return false
            }
            logger.warning("cannot report the run yet; retrying", metadata: ["error": "\(failure.message)"])
            let pause = backoff.next()
            try? await Task.sleep(for: shutdown.map { min(pause, max($0 - ContinuousClock.now, .milliseconds(1))) } ?? pause)
        }
    }

    /// Scripts get a small, known environment (never the worker's DATABASE_URL) plus what identifies the run.
    func environment(for run: ClaimedRun) -> [String: String] {
        var environment = baseEnvironment
        environment["TOCK_RUN_ID"] = String(run.runId)
        environment["TOCK_JOB"] = run.jobName
        environment["TOCK_ATTEMPT"] = String(run.attempt)
        environment["TOCK_TRIGGER"] = run.trigger
        if let scheduledFor = run.scheduledFor {
            environment["TOCK_SCHEDULED_FOR"] = TockJSON.formatTimestamp(scheduledFor)
        }
        return environment
    }
}
