/// Everything the worker decides with, in one value behind one lock (`Worker.state`): the runs it holds and how far
/// each has got, the claim under way, what it has been told (notifications, stop). Each method is one transition or
/// one question; the worker does the I/O an answer calls for (start scripts, signal a script's control, wake the claim
/// loop). Pure, with no clock of its own (callers pass `now`), so every rule is tested without a database
/// (WorkerStateTests).
///
/// A run this worker holds is in exactly one of `running`, `reporting` and `unreported`, and each transition moves it
/// under the one lock: the heartbeat's look at what the worker holds never falls between two of them.
struct WorkerState: Sendable {
    typealias Instant = AnyClock.Instant

    /// What the claim loop does next.
    enum Step: Equatable {
        /// Claim up to `max` runs (the free slots).
        case claim(max: Int)
        /// Sleep until a signal (a notification, a freed slot, the session lock, a stop) or `until`.
        case wait(until: Instant)
        /// No more claims: the worker is stopping.
        case stop
    }

    /// Scripts at once; also the most runs one claim takes.
    let concurrency: Int
    /// The longest the claim loop sleeps while notifications work: a safety net for a lost one.
    let sweepInterval: Duration
    /// How often the claim loop claims while notifications cannot be relied on.
    let pollInterval: Duration
    /// How long running scripts may finish once a stop begins.
    let shutdownGrace: Duration

    /// This worker's id in tock.workers once registered (0 before).
    private(set) var workerID: Int64 = 0

    /// Scripts running, each in a slot, with the control that stops it.
    private(set) var running: [Int64: ScriptControl] = [:]
    /// Runs among `running` a user cancelled (tock.cancel), as opposed to scripts our own shutdown stops.
    private(set) var cancelledByUser: Set<Int64> = []
    /// Runs whose script has ended and whose result is being reported: their slots are free, and they are held.
    private(set) var reporting: Set<Int64> = []
    /// Runs whose report failed for good: still held, so the heartbeat never hands back a run whose script ran. Each
    /// stays running in tock.runs until rescue's orphan rule, or this worker's end, fails it over.
    private(set) var unreported: Set<Int64> = []

    /// A claim sent and not yet answered (or given up on): the worker may hold its runs in a moment. Only the claim
    /// loop claims, one claim at a time.
    private(set) var claimUnderWay = false
    /// Set when runs may be waiting that this worker has not tried to claim: a NOTIFY on tock_runs, a (re)connect, a
    /// claim that filled every free slot, a failed claim. A slot that frees claims only then: an ended run NOTIFYs by
    /// itself when it unblocks another (overlap 'queue'), and a delayed run is slept for (`nextClaim`).
    private(set) var runsMayWait = true
    /// The last claim filled every slot it asked for: more runs are probably waiting (see `nextStep`).
    private(set) var queueHasMore = false
    /// The next claim whatever happens: the safety sweep, the poll without notifications, or a delayed run coming
    /// due. Nil: at once.
    private(set) var nextClaim: Instant?
    /// The error of the claims while they keep failing (nil once one works): the heartbeat reports it, so health
    /// shows a worker that cannot start anything.
    private(set) var claimError: String?

    /// The LISTEN connection holds this worker's session lock. Claims wait for it: tock.rescue() sees a worker's death
    /// within seconds only once it has held the lock (before, after 30 s of heartbeat silence), so every run a worker
    /// holds comes back that fast if it dies.
    private(set) var holdsSessionLock = false
    /// Notifications cannot be relied on (PgBouncer in transaction mode): claims poll every `pollInterval`.
    private(set) var polling = false

    /// No more claims: a stop was asked for, or the database no longer counts this worker as alive.
    private(set) var stopping = false
    /// When the stop began, plus the shutdown grace: running scripts are stopped and handed back then, and reports
    /// stop retrying (see RunReporter).
    private(set) var shutdownDeadline: Instant?

    /// One look at the cancel requests at a time, and one more if asked meanwhile: any login may send NOTIFY
    /// tock_cancel, and a flood must not become a queue of queries in front of the notifications.
    enum CancelCheck: Equatable { case idle, looking, lookingThenAgain }
    private(set) var cancelCheck = CancelCheck.idle

    init(concurrency: Int, sweepInterval: Duration, pollInterval: Duration, shutdownGrace: Duration) {
        self.concurrency = concurrency
        self.sweepInterval = sweepInterval
        self.pollInterval = pollInterval
        self.shutdownGrace = shutdownGrace
    }

    init(_ configuration: WorkerConfiguration) {
        self.init(concurrency: configuration.concurrency, sweepInterval: configuration.sweepInterval,
                  pollInterval: configuration.pollInterval, shutdownGrace: configuration.shutdownGrace)
    }

    // MARK: Questions

    /// The most runs this worker has at once, scripts running and ended ones being reported: a slot frees when
    /// its script ends, before the database has recorded the end, so while finishes cannot commit (a lock, a stall)
    /// fast runs would be claimed without end, each held in memory with its result. Four slots' worth keeps a busy
    /// worker's batches of reports (one commit carries many) out of the way of its claims.
    var heldRunsBound: Int { 4 * concurrency }

    /// Slots without a script: ended runs being reported take none, until there are `heldRunsBound` with the scripts
    /// running. (Runs whose report gave up count for nothing: they are ids, and a worker must go on after an outage.)
    var freeSlots: Int {
        max(0, min(concurrency - running.count, heldRunsBound - running.count - reporting.count))
    }

    /// Every run this worker holds: scripts running, and ended ones the database has not recorded. Nil while a claim
    /// is under way. A claim sent after this look starts its runs later than it, so the database's margin
    /// (`unheldRunsAfter` since the claim) keeps them out of what the heartbeat hands back.
    var heldRuns: [Int64]? {
        guard !claimUnderWay else { return nil }
        return (Array(running.keys) + reporting + unreported).sorted()
    }

    /// What the claim loop does now.
    func nextStep(now: Instant) -> Step {
        guard !stopping else { return .stop }
        let free = freeSlots
        // After a full claim more runs are waiting: claim again once half the slots are free, not per freed slot, so
        // claims stay large under load (one statement and commit per batch). An idle worker claims at once.
        let slotsToClaim = holdsSessionLock && free > 0
            && (!queueHasMore || free >= max(1, concurrency / 2) || free == concurrency)
        // Without slots to claim into, only a freed slot or the session lock (which signal) can change that.
        guard slotsToClaim else { return .wait(until: now + sweepInterval) }
        guard let nextClaim, !runsMayWait, now < nextClaim else { return .claim(max: free) }
        return .wait(until: max(nextClaim, now + .milliseconds(1)))
    }

    /// Whether a script stopped by its control goes back to the queue instead of reporting how it ended: only a stop
    /// of our own shutdown's does; a user's cancel is reported as cancelled.
    func handsBack(_ run: Int64, stoppedByControl: Bool) -> Bool {
        stoppedByControl && stopping && !cancelledByUser.contains(run)
    }

    // MARK: Transitions: registration and notifications

    mutating func registered(id: Int64) {
        workerID = id
    }

    /// The LISTEN connection took the session lock (again, after a reconnect). True the first time: the claim loop,
    /// which waited for it, is to be woken.
    mutating func sessionLocked() -> Bool {
        defer { holdsSessionLock = true }
        return !holdsSessionLock
    }

    /// A NOTIFY on tock_runs: a run was enqueued, or one ended that others waited for.
    mutating func runsNotified() {
        runsMayWait = true
    }

    /// Listening (again): anything may have happened while it was not, runs to claim and cancels to carry out. True:
    /// look at the cancel requests now (see `cancelCheckRequested`).
    mutating func listening() -> Bool {
        polling = false
        runsMayWait = true
        return cancelCheckRequested()
    }

    /// Notifications do not arrive on this connection: claim every `pollInterval` instead.
    mutating func notificationsUnavailable() {
        polling = true
        runsMayWait = true
    }

    // MARK: Transitions: claims

    /// A claim is about to be sent. `runsMayWait` is cleared before it: a NOTIFY that arrives during it sets it again.
    mutating func claimSent() {
        runsMayWait = false
        claimUnderWay = true
    }

    /// The claim's answer: its runs are running here from now on, and held before the claim counts as answered (see
    /// `heldRuns`). A claim that filled every slot it asked for probably left more behind: claim again as soon as
    /// `nextStep` allows.
    mutating func runsClaimed(_ claimed: [(run: Int64, control: ScriptControl)], asked: Int) {
        for (run, control) in claimed { running[run] = control }
        claimUnderWay = false
        claimError = nil
        queueHasMore = claimed.count >= asked
        if queueHasMore { runsMayWait = true }
    }

    /// After a claim's answer: when to claim next whatever happens. `delayedRunDueIn`: when the first run waiting out
    /// a retry backoff (or enqueued ahead of its fire time) comes due; those send no NOTIFY then.
    mutating func nextClaimPlanned(now: Instant, delayedRunDueIn: Duration?) {
        var sleep = polling ? pollInterval : sweepInterval
        if let delayedRunDueIn { sleep = min(sleep, delayedRunDueIn) }
        nextClaim = now + sleep
    }

    /// The claim failed (or the look for delayed runs after it): claim again after a backoff, and say why.
    mutating func claimFailed(_ error: String) {
        claimUnderWay = false
        claimError = error
        runsMayWait = true
    }

    // MARK: Transitions: runs

    /// The database says a user cancelled `run`: the control of its script, to stop it; nil when this worker does not
    /// run it (never held, or its script ended already): ignored.
    mutating func cancelRequested(_ run: Int64) -> ScriptControl? {
        guard let control = running[run] else { return nil }
        cancelledByUser.insert(run)
        return control
    }

    /// The script ended: its slot takes the next run while this one's result is reported (batched with others that
    /// end meanwhile), so a slot never waits on a commit. The run stays held until `reported`.
    mutating func scriptEnded(_ run: Int64) {
        guard running.removeValue(forKey: run) != nil else { return }
        cancelledByUser.remove(run)
        reporting.insert(run)
    }

    /// The database recorded how the run ended: no longer held.
    mutating func reported(_ run: Int64) {
        reporting.remove(run)
    }

    /// The report failed for good: the run stays held (see `unreported`).
    mutating func reportGaveUp(_ run: Int64) {
        guard reporting.remove(run) != nil else { return }
        unreported.insert(run)
    }

    /// Our own shutdown stopped the script and the run went back to the queue (or, if that failed, is left for the
    /// heartbeat to hand back): no longer held. Its slot stayed taken until now, so the drain waited for the release.
    mutating func handedBack(_ run: Int64) {
        running.removeValue(forKey: run)
        cancelledByUser.remove(run)
    }

    // MARK: Transitions: cancel checks

    /// A NOTIFY tock_cancel naming `run`: a hint, not an order (any login may send it). Only a run whose script runs
    /// here makes the worker ask the database, and only a run the database says is to be cancelled is stopped. True:
    /// look at the cancel requests now.
    mutating func cancelNotified(run: Int64) -> Bool {
        guard running[run] != nil else { return false }
        return cancelCheckRequested()
    }

    /// True: start a look at the cancel requests; false: one is under way, and it will look once more.
    mutating func cancelCheckRequested() -> Bool {
        switch cancelCheck {
        case .idle:
            cancelCheck = .looking
            return true
        case .looking, .lookingThenAgain:
            cancelCheck = .lookingThenAgain
            return false
        }
    }

    /// A look at the cancel requests ended. True: look again, it was asked for meanwhile.
    mutating func cancelCheckEnded() -> Bool {
        switch cancelCheck {
        case .lookingThenAgain:
            cancelCheck = .looking
            return true
        case .looking, .idle:
            cancelCheck = .idle
            return false
        }
    }

    // MARK: Transitions: stopping

    /// A stop was asked for (SIGTERM/SIGINT): no new claims, and the shutdown grace starts now.
    mutating func stopRequested(now: Instant) {
        startShutdownClock(now: now)
        stopping = true
    }

    /// The database no longer counts this worker as alive: tock.rescue() judged it lost (a cut network, a long
    /// pause) and failed its runs over to other workers. No new claims, and no grace: its scripts are stopped now,
    /// since each runs a run that is no longer this worker's.
    mutating func deregistered(now: Instant) {
        stopping = true
        shutdownDeadline = min(shutdownDeadline ?? now, now)
    }

    /// The drain begins (after a stop request or a deregistration): the shutdown deadline.
    mutating func drainStarted(now: Instant) -> Instant {
        startShutdownClock(now: now)
    }

    /// Set by whichever comes first: the stop request, or the drain.
    @discardableResult
    private mutating func startShutdownClock(now: Instant) -> Instant {
        let deadline = shutdownDeadline ?? now + shutdownGrace
        shutdownDeadline = deadline
        return deadline
    }
}
