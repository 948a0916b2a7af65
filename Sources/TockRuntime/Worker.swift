import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TockCore
import TockMetrics
import TockPostgres

/// Claims runs when notified, runs each script in the sandbox, reports how it ended, and heartbeats. What it
/// decides with is one value (WorkerState) behind one lock; how it reports is RunReporter.
public final class Worker: Service, Sendable {
    /// What a claimed run does instead of running its script; no executor (production) runs every script in the
    /// sandbox. A benchmark injects one that finishes at once, to time the claim → finish machinery without
    /// processes; it answers nil for a run whose script should run as usual, in the sandbox.
    public typealias RunExecutor = @Sendable (ClaimedRun) async -> RunOutcome?

    /// What the worker did, for tests (see `testSignals`).
    public enum Signal: Sendable, Equatable {
        /// The LISTEN connection holds the worker's session lock (again): claims may begin.
        case sessionLocked
        /// Notifications are listened for (again); `notificationsUnavailable`: polling instead.
        case listening
        case notificationsUnavailable
        /// A claim's answer: the runs it took (none: the queue had nothing for this worker).
        case claimed([Int64])
        case claimFailed(String)
        /// A user's cancel reached the run's script.
        case cancelling(Int64)
        /// The run's script ended (its slot is free); its result is being reported.
        case scriptEnded(Int64)
        /// The database recorded how the run ended.
        case reported(Int64, RunStatus)
        /// Its report failed for good: the run stays held (see WorkerState.unreported).
        case reportGaveUp(Int64)
        /// The database refused its report: the run was no longer this worker's (RunReporter.Report.refused).
        case reportRefused(Int64)
        /// Our own shutdown stopped the run's script and the run went back to the queue.
        case handedBack(Int64)
        /// A heartbeat the database answered, with the runs it said this worker holds (nil: a claim was under way).
        case heartbeat(held: [Int64]?)
        /// The worker stops claiming: a stop was asked for, or the database no longer counts it as alive.
        case stopping
    }

    let database: Database
    let settings: ConnectionSettings
    let configuration: WorkerConfiguration
    let sandbox: ScriptSandbox
    let runner: ScriptRunner
    /// HTTP jobs' requests, to the hosts `--http-allow` lists (none: each HTTP run fails, saying so).
    let httpJobs: HTTPJobRunner
    let logger: Logger
    let executor: RunExecutor?
    let metrics: TockMetrics
    /// What sweeps, heartbeats, graces and retries are timed on: ContinuousClock but in tests.
    let clock: AnyClock
    let state: Mutex<WorkerState>
    let wake: WakeSignal
    /// Off (and free) until a test subscribes.
    public let testSignals = TestSignals<Signal>()
    /// Started when the worker runs (see WorkerConfiguration.guardExecutable).
    let scriptGuard = Mutex<ScriptGuard?>(nil)
    /// What every script inherits from the worker's environment, read once.
    let baseEnvironment: [String: String]

    public init(database: Database, settings: ConnectionSettings, configuration: WorkerConfiguration,
                metrics: TockMetrics = TockMetrics(), executor: RunExecutor? = nil,
                clock: some Clock<Duration> = ContinuousClock(), logger: Logger) throws(TockError) {
        guard (1...1000).contains(configuration.concurrency) else {
            throw TockError(.invalidInput, field: "concurrency", "concurrency \(configuration.concurrency) is out of range 1-1000")
        }
        // This worker's secret (see WorkerLease): its copy of the database presents it on every worker call.
        var database = database
        database.leaseToken = WorkerLease.newToken()
        self.database = database
        self.configuration = configuration
        self.sandbox = try ScriptSandbox(directory: configuration.scriptsDirectory)
        self.httpJobs = HTTPJobRunner(allow: configuration.httpAllow)
        self.runner = ScriptRunner(outputCapBytes: configuration.outputCapBytes,
                                   killGraceSeconds: configuration.killGraceSeconds,
                                   containment: try ScriptContainment.make(configuration.containment),
                                   credentials: configuration.runAs)
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.logger = logger
        self.clock = AnyClock(clock)
        self.state = Mutex(WorkerState(configuration))
        self.wake = WakeSignal(clock: self.clock)
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

    /// Registers this worker. A chosen name a live worker holds is tried again every 2 s for
    /// `configuration.nameWait`: a worker restarted after a crash waits for its predecessor to be judged lost.
    /// A database that cannot take the call now (no connection free: too many workers for max_connections) is
    /// waited out with backoff, saying so: the worker starts once connections free up.
    private func register() async throws -> Int64 {
        let deadline = clock.now + configuration.nameWait
        var backoff = RetryBackoff(initial: .seconds(1), maximum: .seconds(30))
        while true {
            do {
                return try await database.registerWorker(
                    host: ProcessInfo.processInfo.hostName, pid: Int(getpid()), concurrency: configuration.concurrency,
                    scriptsDirectory: sandbox.root, version: TockVersion.current, name: configuration.name,
                    pools: configuration.pools)
            } catch {
                // The start's check found the server and this login good (a wrong password, database or address has
                // exited by now), so an outage here is passing: a server with no connection free, whose refusals
                // the pool keeps to itself until the call times out. Not a schema that needs `tock migrate`.
                if error.kind == .unavailable, !error.message.contains("tock migrate") {
                    let wait = backoff.next()
                    logger.warning("cannot register with PostgreSQL now; trying again",
                                   metadata: ["error": "\(error.message)", "retry_in": "\(wait)"])
                    // A stop asked for meanwhile (SIGTERM) ends the wait, and the worker with it.
                    try await cancelWhenGracefulShutdown { try await self.clock.sleep(for: wait) }
                    continue
                }
                guard error.kind == .conflict, error.field == "name", clock.now < deadline else { throw error }
                logger.warning("this worker's name is taken; trying again until its holder stops or is judged lost",
                               metadata: ["error": "\(error.message)"])
                try await clock.sleep(for: .seconds(2))
            }
        }
    }

    /// This worker's id in tock.workers, once registered (0 before).
    public var id: Int64 { state.withLock { $0.workerID } }

    public func run() async throws {
        let id: Int64
        do {
            id = try await register()
        } catch {
            // Stopped (SIGTERM) while it waited for a connection to register: nothing to hand back.
            guard error is CancellationError, Task.isShuttingDownGracefully else { throw error }
            logger.info("worker stopped before it could register")
            return
        }
        state.withLock { $0.registered(id: id) }
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
            "name": "\(configuration.name ?? "\(ProcessInfo.processInfo.hostName):\(getpid())")",
            "pools": "\(configuration.pools.joined(separator: ","))",
            "concurrency": "\(configuration.concurrency)", "scripts_dir": "\(sandbox.root)",
            "script_guard": "\(scriptGuard.map { String($0.pid) } ?? "none")",
            "containment": "\(runner.containment.mode.rawValue): \(runner.containment.detail)",
            "scripts_run_as": "\(configuration.runAs?.user ?? "the worker's user (uid \(getuid()))")"])
        let reporter = RunReporter(database: database, worker: id, clock: clock,
                                   shutdownDeadline: { self.state.withLock { $0.shutdownDeadline } })
        // Taken before anything can signal that the worker runs: a test that moves a manual clock once told is sure
        // to reach the first beat (see WakeSignal.wait(until:)).
        let firstBeat = clock.now + configuration.heartbeatInterval

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                var listener = NotificationListener(
                    settings: settings, channels: ["tock_runs", "tock_cancel"], logger: logger,
                    onConnect: { connection in
                        // Held while this process lives: tock.rescue() sees at once when it does not (a reconnect
                        // takes it again).
                        _ = try await connection.query("SELECT tock.hold_worker_session(\(id), \(self.database.leaseToken))",
                                                       logger: logger).collect()
                        if self.state.withLock({ $0.sessionLocked() }) { self.wake.signal() }
                        self.testSignals.send(.sessionLocked)
                    })
                listener.follow = self.database.primary
                group.addTask {
                    await listener.run { event in await self.handle(event, worker: id, logger: logger) }
                }
                group.addTask { await self.heartbeatLoop(id: id, firstBeat: firstBeat, logger: logger) }
                await self.claimLoop(id: id, group: &group, reporter: reporter, logger: logger)
                await self.drain(id: id, logger: logger)
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.stopRequested(now: self.clock.now) }
            self.testSignals.send(.stopping)
            self.wake.signal()
        }
        try? await shutdownDatabase.setWorkerState(worker: id, state: "stopped")
        await httpJobs.shutdown()
        logger.info("worker stopped")
    }

    private func claimLoop(id: Int64, group: inout DiscardingTaskGroup, reporter: RunReporter, logger: Logger) async {
        var backoff = RetryBackoff(initial: .milliseconds(200))
        while !Task.isCancelled {
            switch state.withLock({ $0.nextStep(now: clock.now) }) {
            case .stop:
                return
            case .wait(let until):
                await wake.wait(until: until)
            case .claim(let slots):
                do {
                    state.withLock { $0.claimSent() }
                    let claim = try await database.claim(worker: id, max: slots)
                    let claimed = claim.runs.map { ($0, ScriptControl()) }
                    let (queueHasMore, inFlight) = state.withLock { state in
                        state.runsClaimed(claimed.map { run, control in (run: run.runId, control: control) }, asked: slots)
                        return (state.queueHasMore, state.running.count)
                    }
                    metrics.runsInFlight(inFlight)
                    testSignals.send(.claimed(claimed.map { run, _ in run.runId }))
                    backoff.reset()
                    for (run, control) in claimed {
                        group.addTask { await self.execute(run, worker: id, control: control, reporter: reporter, logger: logger) }
                    }
                    var delayedRunDueIn: Duration?
                    // The claim says, as of its own time, when a run not yet due comes due (a full claim does not
                    // ask: it claims again as soon as slots free). Asked afterwards, as of the worker's reckoning of
                    // the claim's time, a question that reached the server late missed a run that came due in
                    // between (a scheduled run enqueued ahead of its fire time, on a loaded machine), and the worker
                    // slept until its sweep.
                    if !queueHasMore, let delayed = claim.nextDelayed {
                        delayedRunDueIn = .milliseconds(max(Int64(delayed.timeIntervalSinceNow * 1000) + 1, 1))
                    }
                    state.withLock { $0.nextClaimPlanned(now: clock.now, delayedRunDueIn: delayedRunDueIn) }
                } catch {
                    logger.warning("claim failed; retrying", metadata: ["error": "\(error.message)"])
                    state.withLock { $0.claimFailed(error.message) }
                    testSignals.send(.claimFailed(error.message))
                    await wake.wait(timeout: backoff.next())
                }
            }
        }
    }

    /// The database for the calls a stopping worker makes besides its reports: when the database is away, each
    /// fails after 2 s rather than the usual call timeout, so they do not add 20 s to the exit.
    private var shutdownDatabase: Database {
        var database = database
        database.callTimeout = min(database.callTimeout, .seconds(2))
        return database
    }

    /// Graceful shutdown: no new claims; running scripts get the grace period, then are stopped and handed back.
    private func drain(id: Int64, logger: Logger) async {
        let deadline = state.withLock { $0.drainStarted(now: clock.now) }
        try? await shutdownDatabase.setWorkerState(worker: id, state: "stopping")
        // Read again each time: a worker judged lost during its grace stops its scripts at once (deregistered).
        while !state.withLock({ $0.running.isEmpty }) && clock.now < min(deadline, state.withLock { $0.shutdownDeadline } ?? deadline) {
            await wake.wait(timeout: .milliseconds(200))
        }
        let left = state.withLock { $0.running }
        if !left.isEmpty {
            logger.warning("shutdown grace over; stopping scripts and handing their runs back",
                           metadata: ["runs": "\(left.keys.sorted())"])
            left.values.forEach { $0.cancel() }
            while !state.withLock({ $0.running.isEmpty }) {
                await wake.wait(timeout: .milliseconds(200))
            }
        }
        // Scripts that ended are reported (or handed back) before the worker says it stopped, but a database that
        // is away does not hold the exit past the grace (and the moments stopped scripts took to die): the reporter
        // gives up then, and when the task group is cancelled, on a call still under way; it logs each run it
        // gave up on.
        let reportsDeadline = max(deadline, clock.now) + .seconds(2)
        while !state.withLock({ $0.reporting.isEmpty }) && clock.now < reportsDeadline {
            await wake.wait(timeout: .milliseconds(200))
        }
    }

    private func handle(_ event: NotificationListener.Event, worker: Int64, logger: Logger) async {
        switch event {
        case .notification(channel: "tock_cancel", let payload):
            guard let run = Int64(payload), state.withLock({ $0.cancelNotified(run: run) }) else { return }
            lookAtCancelRequests(worker: worker, logger: logger)
        case .notification:
            state.withLock { $0.runsNotified() }
            wake.signal()
        case .notificationsUnavailable:
            state.withLock { $0.notificationsUnavailable() }
            testSignals.send(.notificationsUnavailable)
            wake.signal()
        case .listening:
            let lookAtCancels = state.withLock { $0.listening() }
            testSignals.send(.listening)
            wake.signal()
            if lookAtCancels { lookAtCancelRequests(worker: worker, logger: logger) }
        }
    }

    /// Looks at the cancel requests beside the notifications, never in their way: one look at a time, and one more if
    /// asked for meanwhile (see WorkerState.cancelCheck). Called once WorkerState said to start a look.
    private func lookAtCancelRequests(worker: Int64, logger: Logger) {
        Task {
            repeat {
                await cancelRequested(worker: worker, logger: logger)
            } while state.withLock { $0.cancelCheckEnded() }
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
        guard let control = state.withLock({ $0.cancelRequested(run) }) else { return }
        logger.info("cancelling", metadata: ["run": "\(run)"])
        testSignals.send(.cancelling(run))
        control.cancel()
    }

    /// Beats every `heartbeatInterval` after the last beat ended. Each next beat is planned before the signal of the
    /// last, so a test that moves a manual clock once told reaches it.
    private func heartbeatLoop(id: Int64, firstBeat: AnyClock.Instant, logger: Logger) async {
        var nextBeat = firstBeat
        while !Task.isCancelled {
            try? await clock.sleep(until: nextBeat)
            if Task.isCancelled { return }
            // With each beat, whether or not the database answers: a guard killed on its own is replaced within one.
            scriptGuard.withLock { $0 }?.restartIfGone(logger: logger)
            let (held, claimError) = state.withLock { ($0.heldRuns, $0.claimError) }
            let answer: Result<String?, TockError>
            do {
                answer = .success(try await database.heartbeat(worker: id, held: held, unheldAfter: configuration.unheldRunsAfter,
                                                               claimError: claimError))
            } catch {
                answer = .failure(error)
            }
            nextBeat = clock.now + configuration.heartbeatInterval
            switch answer {
            case .success(nil):
                logger.error("""
                    this worker is no longer registered as alive in tock.workers: it was judged lost (no heartbeat \
                    within the lease) and its runs were failed over to other workers; stopping its scripts now and \
                    exiting
                    """)
                state.withLock { $0.deregistered(now: clock.now) }
                testSignals.send(.stopping)
                wake.signal()
                return
            case .success:
                testSignals.send(.heartbeat(held: held))
            case .failure(let error):
                if Task.isCancelled { return }  // the worker is exiting
                logger.warning("heartbeat failed", metadata: ["error": "\(error.message)"])
            }
        }
    }

    private func execute(_ run: ClaimedRun, worker: Int64, control: ScriptControl, reporter: RunReporter,
                         logger: Logger) async {
        var logger = logger
        logger[metadataKey: "run"] = "\(run.runId)"
        logger[metadataKey: "job"] = "\(run.jobName)"
        let started = clock.now
        metrics.runStarted(job: run.jobName, trigger: run.trigger, scheduledFor: run.scheduledFor)
        let ran: RunOutcome?
        if let executor, let outcome = await executor(run) {
            ran = outcome
        } else if let http = run.http {
            ran = await sendRequest(http, of: run, control: control, logger: logger)
        } else {
            ran = await runScript(run, worker: worker, control: control, reporter: reporter, logger: logger)
        }
        guard let outcome = ran else {
            metrics.runsInFlight(state.withLock { $0.handedBack(run.runId); return $0.running.count })
            testSignals.send(.handedBack(run.runId))
            wake.signal()
            return
        }
        metrics.runsInFlight(state.withLock { $0.scriptEnded(run.runId); return $0.running.count })
        testSignals.send(.scriptEnded(run.runId))
        wake.signal()
        let report = await reporter.finish(run.runId, outcome, logger: logger)
        state.withLock { report == .gaveUp ? $0.reportGaveUp(run.runId) : $0.reported(run.runId) }
        wake.signal()
        switch report {
        case .gaveUp:
            testSignals.send(.reportGaveUp(run.runId))
            return
        case .refused:
            logger.warning("\(RunReporter.refusedMessage)", metadata: ["status": "\(outcome.status.rawValue)"])
            testSignals.send(.reportRefused(run.runId))
            return
        case .recorded:
            break
        }
        metrics.runFinished(job: run.jobName, status: outcome.status.rawValue, duration: clock.now - started)
        logger.info("run finished", metadata: [
            "status": "\(outcome.status.rawValue)", "exit_code": "\(outcome.exitCode.map(String.init) ?? "-")"])
        testSignals.send(.reported(run.runId, outcome.status))
    }

    /// An HTTP job's run: its request sent, `{{secret.NAME}}` in its URL's path and query, headers and body replaced by
    /// the secrets its job names (masked again in what is kept of the answer, as the file holds them).
    private func sendRequest(_ spec: HTTPRequestSpec, of run: ClaimedRun, control: ScriptControl, logger: Logger) async -> RunOutcome {
        var spec = spec
        let secrets: [(name: String, value: String)]
        switch self.secrets(of: run) {
        case .success(let found): secrets = found
        case .failure(let missing): return missing.outcome
        }
        for (name, value) in secrets {
            let placeholder = "{{secret.\(name)}}"
            // Into the URL's path and query too; the host is checked against --http-allow after.
            spec.url = spec.url.replacingOccurrences(of: placeholder, with: value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+#?/"))) ?? "")
            spec.headers = spec.headers?.mapValues { $0.replacingOccurrences(of: placeholder, with: value) }
            spec.body = spec.body?.replacingOccurrences(of: placeholder, with: value)
        }
        logger.info("request sent", metadata: ["method": "\(spec.method ?? "POST")", "url": "\(HostAllowList.origin(spec.url))"])
        return SecretMask(secrets.map(\.value)).apply(to: await httpJobs.send(spec, timeoutSeconds: run.timeoutSeconds, control: control))
    }

    /// A job's run could not have a secret it names: how the run ends, without running.
    struct MissingSecret: Error {
        var outcome: RunOutcome
    }

    /// The secrets `run`'s job names, with their values from this worker's file (only those it holds for the job).
    private func secrets(of run: ClaimedRun) -> Result<[(name: String, value: String)], MissingSecret> {
        var found: [(name: String, value: String)] = []
        for name in run.secrets where Self.isJobVariable(name) {
            guard let value = configuration.secrets?.value(name, for: run.jobName) else {
                return .failure(MissingSecret(outcome: RunOutcome(status: .failed, error: configuration.secrets.map {
                    "the job needs secret \(name), which this worker's secrets file \($0.path) does not hold for job \(run.jobName): add it there (\(name):\(run.jobName)=value)"
                } ?? "the job needs secret \(name), and this worker has no secrets file: start it with --secrets-file FILE")))
            }
            found.append((name, value))
        }
        return .success(found)
    }

    /// Runs the script in the sandbox and says how it ended; nil when our own shutdown stopped it and the run went
    /// back to the queue.
    private func runScript(_ run: ClaimedRun, worker: Int64, control: ScriptControl, reporter: RunReporter,
                           logger: Logger) async -> RunOutcome? {
        do {
            // Opened once, beneath the scripts directory: the open file is what runs.
            let file = try sandbox.open(run.script)
            let path = file.path
            // A #! script runs from the open file, so its $0 is /dev/fd/3: this says where it is.
            var environment = environment(for: run)
            environment["TOCK_SCRIPT"] = path
            // The secrets its job names, from this worker's file; their values are masked in what it prints.
            let secrets: [(name: String, value: String)]
            switch self.secrets(of: run) {
            case .success(let found): secrets = found
            case .failure(let missing): return missing.outcome
            }
            for (name, value) in secrets { environment[name] = value }
            let mask = SecretMask(secrets.map(\.value))
            // The process first, then the log line and the live-output task: they are not on the path to its start.
            let script = try await runner.start(
                script: file, arguments: run.args, environment: environment,
                workingDirectory: sandbox.root, timeoutSeconds: run.timeoutSeconds, control: control,
                scriptGuard: scriptGuard.withLock { $0 })
            logger.info("run started", metadata: [
                "script": "\(path)", "pid": "\(script.pid)", "attempt": "\(run.attempt)", "trigger": "\(run.trigger)"])
            let live = configuration.liveOutputInterval.map { [logger] interval in
                Task { await self.streamOutput(run.runId, worker: worker, control: control, every: interval, mask: mask, logger: logger) }
            }
            let result = await script.wait()
            // Stopped before the final report overwrites the output.
            live?.cancel()
            await live?.value
            if state.withLock({ $0.handsBack(run.runId, stoppedByControl: result.cancelled) }) {
                // Its slot stays taken until the release is sent: the drain waits for it.
                switch await reporter.handBack(run.runId, logger: logger) {
                case .recorded: logger.info("handed back")
                case .refused: logger.warning("\(RunReporter.refusedMessage)")
                case .gaveUp: break
                }
                return nil
            }
            return mask.apply(to: result.outcome(timeoutSeconds: run.timeoutSeconds))
        } catch {
            return RunOutcome(status: .failed, error: error.message)
        }
    }

    /// Sends a running script's new output to the database every `interval`, so the portal can show it live.
    private func streamOutput(_ run: Int64, worker: Int64, control: ScriptControl, every interval: Duration,
                              mask: SecretMask, logger: Logger) async {
        var reportedBytes = 0
        while (try? await clock.sleep(for: interval)) != nil {
            guard let output = control.outputSoFar, output.totalBytes != reportedBytes else { continue }
            do {
                guard try await database.reportOutput(run, worker: worker, output: mask.apply(output.text),
                                                      totalBytes: output.totalBytes, truncated: output.truncated) else { return }
                reportedBytes = output.totalBytes
            } catch {
                logger.debug("could not send live output", metadata: ["error": "\(error.message)"])
            }
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
        for (name, value) in run.environment where Self.isRunVariable(name) || Self.isJobVariable(name) {
            environment[name] = value
        }
        return environment
    }

    /// A job's own variable, as a claim gives it: tock.is_env_name's rule, kept here too, for a variable reaches the
    /// script whatever the database holds (a row written by hand): a name of letters, digits and _, nothing Tock
    /// sets, nothing that changes what a program loads or runs.
    static func isJobVariable(_ name: String) -> Bool {
        let upper = name.uppercased()
        guard let first = name.utf8.first, first == UInt8(ascii: "_") || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first & 0xDF),
              name.utf8.count <= 64,
              name.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                  || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0 & 0xDF) }) else { return false }
        return !deniedPrefixes.contains(where: upper.hasPrefix) && !upper.hasSuffix("_PROXY") && !deniedNames.contains(upper)
    }

    static let deniedPrefixes = ["TOCK_", "LD_", "DYLD_", "PERL", "PYTHON", "NODE_", "RUBY", "JAVA_", "_JAVA_", "JDK_", "GIT_",
                                 "OPENSSL_", "GLIBC_", "GCONV_", "MALLOC_", "BASH_FUNC_"]
    static let deniedNames: Set = ["PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND",
                                   "CDPATH", "GLOBIGNORE", "SHELL", "USER", "LOGNAME", "TMPDIR", "NLSPATH", "LOCPATH",
                                   "HOSTALIASES", "RES_OPTIONS", "TZDIR", "BROWSER", "PAGER", "EDITOR", "VISUAL", "LESSOPEN",
                                   "LESSCLOSE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"]

    /// The names a claim may add to a script's environment: TOCK_PARAM_<NAME> and a chained run's TOCK_UPSTREAM_*
    /// (tock.run_environment). Anything else a claim carried (a caller that wrote tock.runs by hand) is dropped: a
    /// job cannot set PATH or LD_PRELOAD, nor replace what identifies its run.
    static func isRunVariable(_ name: String) -> Bool {
        if ["TOCK_UPSTREAM_RUN_ID", "TOCK_UPSTREAM_JOB", "TOCK_UPSTREAM_STATUS"].contains(name) { return true }
        let prefix = "TOCK_PARAM_"
        guard name.hasPrefix(prefix), name.utf8.count > prefix.utf8.count, name.utf8.count <= 100 else { return false }
        return name.utf8.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_") }
    }
}
