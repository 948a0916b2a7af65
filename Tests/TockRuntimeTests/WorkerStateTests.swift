import Testing
import TockCore
@testable import TockRuntime

/// The worker's decisions, one transition at a time, without a database: what it claims and when, what it holds,
/// what it cancels, how it stops.
@Suite("worker state")
struct WorkerStateTests {
    let t0 = AnyClock.Instant(offset: .seconds(1000))
    let sweep = Duration.seconds(60), poll = Duration.milliseconds(500), grace = Duration.seconds(30)

    /// A worker with `concurrency` slots, its session lock held and its first claim answered with nothing.
    func idleWorker(concurrency: Int = 4) -> WorkerState {
        var state = WorkerState(concurrency: concurrency, sweepInterval: sweep, pollInterval: poll, shutdownGrace: grace)
        _ = state.sessionLocked()
        state.claimSent()
        state.runsClaimed([], asked: concurrency)
        state.nextClaimPlanned(now: t0, delayedRunDueIn: nil)
        return state
    }

    /// Claims `runs` the way the claim loop does, asking for every free slot.
    func claim(_ runs: [Int64], into state: inout WorkerState) {
        let asked = state.freeSlots
        state.claimSent()
        state.runsClaimed(runs.map { (run: $0, control: ScriptControl()) }, asked: asked)
        state.nextClaimPlanned(now: t0, delayedRunDueIn: nil)
    }

    @Test("no claim before the session lock is held; the first lock wakes the claim loop, a re-lock does not")
    func claimsWaitForTheSessionLock() {
        var state = WorkerState(concurrency: 4, sweepInterval: sweep, pollInterval: poll, shutdownGrace: grace)
        #expect(state.nextStep(now: t0) == .wait(until: t0 + sweep))
        let first = state.sessionLocked()
        #expect(first, "the claim loop waited for it: wake it")
        #expect(state.nextStep(now: t0) == .claim(max: 4))
        let again = state.sessionLocked()
        #expect(!again, "a reconnect takes the lock again: nothing new to wake for")
    }

    @Test("an idle worker claims on a notification, or when the safety sweep is due, and otherwise sleeps until then")
    func idleWorkerClaimsOnNotificationOrSweep() {
        var state = idleWorker()
        #expect(state.nextStep(now: t0) == .wait(until: t0 + sweep))
        #expect(state.nextStep(now: t0 + sweep) == .claim(max: 4))
        state.runsNotified()
        #expect(state.nextStep(now: t0) == .claim(max: 4))
    }

    @Test("a notification that arrives while a claim is under way makes the worker claim again after it")
    func notificationDuringClaimIsKept() {
        var state = idleWorker()
        state.runsNotified()
        state.claimSent()
        state.runsNotified()
        state.runsClaimed([(run: 1, control: ScriptControl())], asked: 4)
        state.nextClaimPlanned(now: t0, delayedRunDueIn: nil)
        #expect(state.nextStep(now: t0) == .claim(max: 3))
    }

    @Test("after a full claim the worker claims again once half its slots are free, not per freed slot")
    func halfFreeRule() {
        var state = idleWorker(concurrency: 4)
        claim([1, 2, 3, 4], into: &state)
        #expect(state.queueHasMore && state.runsMayWait)
        #expect(state.nextStep(now: t0) == .wait(until: t0 + sweep), "no free slot")
        state.scriptEnded(1)
        #expect(state.nextStep(now: t0) == .wait(until: t0 + sweep), "one free slot of four: not yet")
        state.scriptEnded(2)
        #expect(state.nextStep(now: t0) == .claim(max: 2), "half the slots are free")
        // A claim that took fewer than it asked for found the queue drained: a freed slot claims at once again.
        claim([5], into: &state)
        state.runsNotified()
        #expect(state.nextStep(now: t0) == .claim(max: 1))
    }

    @Test("the half-free rule rounds: one slot of one, two of five; an empty worker always claims")
    func halfFreeRuleEdges() {
        var one = idleWorker(concurrency: 1)
        claim([1], into: &one)
        #expect(one.nextStep(now: t0) == .wait(until: t0 + sweep))
        one.scriptEnded(1)
        #expect(one.nextStep(now: t0) == .claim(max: 1))

        var five = idleWorker(concurrency: 5)
        claim([1, 2, 3, 4, 5], into: &five)
        five.scriptEnded(1)
        #expect(five.nextStep(now: t0) == .wait(until: t0 + sweep))
        five.scriptEnded(2)
        #expect(five.nextStep(now: t0) == .claim(max: 2))
    }

    @Test("a full claim claims again without waiting for a notification once slots allow")
    func fullClaimNeedsNoNotification() {
        var state = idleWorker(concurrency: 2)
        claim([1, 2], into: &state)
        state.scriptEnded(1)
        // Neither a notification nor the sweep: the full claim itself said more runs may wait.
        #expect(state.nextStep(now: t0) == .claim(max: 1))
    }

    @Test("a delayed run coming due before the sweep is slept for; polling shortens the sleep without notifications")
    func delayedRunAndPolling() {
        var state = idleWorker()
        state.claimSent()
        state.runsClaimed([], asked: 4)
        state.nextClaimPlanned(now: t0, delayedRunDueIn: .seconds(2))
        #expect(state.nextStep(now: t0) == .wait(until: t0 + .seconds(2)))
        #expect(state.nextStep(now: t0 + .seconds(2)) == .claim(max: 4))
        state.nextClaimPlanned(now: t0, delayedRunDueIn: .seconds(600))
        #expect(state.nextStep(now: t0) == .wait(until: t0 + sweep), "never longer than the sweep")

        state.notificationsUnavailable()
        #expect(state.polling && state.nextStep(now: t0) == .claim(max: 4))
        state.claimSent()
        state.runsClaimed([], asked: 4)
        state.nextClaimPlanned(now: t0, delayedRunDueIn: nil)
        #expect(state.nextStep(now: t0) == .wait(until: t0 + poll))
        let lookAtCancels = state.listening()
        #expect(lookAtCancels)
        #expect(!state.polling && state.nextStep(now: t0) == .claim(max: 4), "listening again: catch up at once")
    }

    @Test("a wait is never shorter than a millisecond, even when the next claim is due this instant")
    func waitIsAtLeastAMillisecond() {
        var state = idleWorker()
        state.nextClaimPlanned(now: t0, delayedRunDueIn: .microseconds(10))
        #expect(state.nextStep(now: t0) == .wait(until: t0 + .milliseconds(1)))
    }

    @Test("a failed claim is retried without a notification, and its error is kept until a claim works")
    func failedClaim() {
        var state = idleWorker()
        state.claimSent()
        #expect(state.heldRuns == nil)
        state.claimFailed("permission denied for function claim_runs")
        #expect(state.heldRuns == [])
        #expect(state.claimError == "permission denied for function claim_runs")
        #expect(state.nextStep(now: t0) == .claim(max: 4))
        state.claimSent()
        state.runsClaimed([], asked: 4)
        #expect(state.claimError == nil)
    }

    @Test("held runs are unknown while a claim is under way, and include the claimed runs once it is answered")
    func heldRunsDuringClaim() {
        var state = idleWorker()
        claim([7], into: &state)
        #expect(state.heldRuns == [7])
        state.claimSent()
        #expect(state.heldRuns == nil, "the claim may have taken runs the worker does not know of yet")
        state.runsClaimed([(run: 3, control: ScriptControl())], asked: 3)
        #expect(state.heldRuns == [3, 7])
    }

    @Test("a run whose script ended stays held while it is reported, and for good when its report gave up")
    func endedButUnreportedRunsStayHeld() {
        var state = idleWorker(concurrency: 2)
        claim([1, 2], into: &state)
        state.scriptEnded(1)
        #expect(state.freeSlots == 1, "the slot frees when the script ends, before the report")
        #expect(state.heldRuns == [1, 2])
        #expect(state.reporting == [1])
        state.reported(1)
        #expect(state.heldRuns == [2])

        state.scriptEnded(2)
        state.reportGaveUp(2)
        #expect(state.reporting.isEmpty, "the drain does not wait for it")
        #expect(state.heldRuns == [2], "never handed back by the heartbeat: its script ran")
        #expect(state.freeSlots == 2)
    }

    @Test("while reports cannot commit, ended runs stop freeing slots once the worker holds four slots' worth")
    func heldRunsAreBounded() {
        var state = idleWorker(concurrency: 2)
        var next: Int64 = 1
        var claims = 0
        // Scripts end at once and their reports never commit: each claim takes what is free, until none is.
        while case .claim(let max) = state.nextStep(now: t0 + sweep), claims < 20 {
            claims += 1
            let runs = (0..<max).map { _ in defer { next += 1 }; return next }
            claim(runs, into: &state)
            for run in runs { state.scriptEnded(run) }
        }
        #expect(state.heldRuns?.count == 8, "four slots' worth, then no more claims")
        #expect(state.freeSlots == 0 && state.running.isEmpty)
        // One report commits: one slot frees again.
        state.reported(1)
        #expect(state.freeSlots == 1)
    }

    @Test("a run handed back by our shutdown is no longer held; its slot stayed taken until then")
    func handedBackRunIsNotHeld() {
        var state = idleWorker(concurrency: 2)
        claim([1], into: &state)
        state.stopRequested(now: t0)
        #expect(state.handsBack(1, stoppedByControl: true))
        #expect(state.freeSlots == 1 && state.running.keys.contains(1))
        state.handedBack(1)
        #expect(state.heldRuns == [])
        #expect(state.running.isEmpty && state.reporting.isEmpty)
    }

    @Test("a cancel for a run the worker does not run is ignored; one for a running script stops it")
    func cancelOnlyRunningScripts() {
        var state = idleWorker()
        let control = ScriptControl()
        state.claimSent()
        state.runsClaimed([(run: 1, control: control), (run: 2, control: ScriptControl())], asked: 4)
        let notHeld = (state.cancelNotified(run: 99), state.cancelRequested(99))
        #expect(!notHeld.0, "a NOTIFY naming a run not held asks nothing")
        #expect(notHeld.1 == nil)
        #expect(state.cancelledByUser.isEmpty)
        let running = state.cancelRequested(1)
        #expect(running === control)
        #expect(state.cancelledByUser == [1])

        state.scriptEnded(2)
        let ended = (state.cancelNotified(run: 2), state.cancelRequested(2))
        #expect(!ended.0, "its script ended already")
        #expect(ended.1 == nil)
        state.scriptEnded(1)
        #expect(state.cancelledByUser.isEmpty)
    }

    @Test("a script a user cancelled is reported as cancelled even while the worker stops; only our stop hands back")
    func userCancelIsReportedNotHandedBack() {
        var state = idleWorker()
        claim([1, 2], into: &state)
        _ = state.cancelRequested(1)
        #expect(!state.handsBack(1, stoppedByControl: true), "not stopping: a cancel is reported")
        state.stopRequested(now: t0)
        #expect(!state.handsBack(1, stoppedByControl: true), "the user's cancel, not our shutdown")
        #expect(state.handsBack(2, stoppedByControl: true))
        #expect(!state.handsBack(2, stoppedByControl: false), "a script that ended by itself is reported")
    }

    @Test("cancel looks coalesce: one at a time, and one more if any were asked for meanwhile")
    func cancelChecksCoalesce() {
        var state = idleWorker()
        claim([1], into: &state)
        // Each answer says whether to start a look: the first does; those asked meanwhile (a NOTIFY, another, a
        // reconnect's look) make one more after it, and only one.
        let answers = [state.cancelNotified(run: 1), state.cancelNotified(run: 1), state.cancelCheckRequested(),
                       state.listening(), state.cancelCheckEnded(), state.cancelCheckEnded()]
        #expect(answers == [true, false, false, false, true, false])
        #expect(state.cancelCheck == .idle)
        let next = state.listening()
        #expect(next, "a look after the last ended starts at once")
    }

    @Test("a stop during a claim: its runs are held and run, and no claim follows")
    func stopDuringClaim() {
        var state = idleWorker()
        state.runsNotified()
        state.claimSent()
        state.stopRequested(now: t0)
        #expect(state.nextStep(now: t0) == .stop)
        state.runsClaimed([(run: 1, control: ScriptControl())], asked: 4)
        #expect(state.heldRuns == [1])
        #expect(state.running.keys.sorted() == [1], "the drain gives it the grace")
        state.runsNotified()
        #expect(state.nextStep(now: t0) == .stop)
        #expect(state.shutdownDeadline == t0 + grace)
    }

    @Test("the shutdown deadline is set by whichever comes first: the stop request or the drain")
    func shutdownDeadline() {
        var requested = idleWorker()
        requested.stopRequested(now: t0)
        let requestedDeadline = requested.drainStarted(now: t0 + .seconds(5))
        #expect(requestedDeadline == t0 + grace)
        requested.stopRequested(now: t0 + .seconds(9))
        #expect(requested.shutdownDeadline == t0 + grace, "a second SIGTERM does not extend the grace")

        var deregistered = idleWorker()
        deregistered.deregistered(now: t0)
        #expect(deregistered.stopping && deregistered.shutdownDeadline == t0, "a lost worker's runs are another's: no grace")
        #expect(deregistered.nextStep(now: t0) == .stop)
        let deregisteredDeadline = deregistered.drainStarted(now: t0 + .seconds(5))
        #expect(deregisteredDeadline == t0)
        var stoppingThenLost = idleWorker()
        stoppingThenLost.stopRequested(now: t0)
        stoppingThenLost.deregistered(now: t0 + .seconds(3))
        #expect(stoppingThenLost.shutdownDeadline == t0 + .seconds(3), "losing the lease ends a grace under way")
    }
}

@Suite("run reporter")
struct RunReporterTests {
    let t0 = AnyClock.Instant(offset: .seconds(1000))

    @Test("an unavailable database is retried with backoff, however long, until a stop begins")
    func retriesWhileUnavailable() {
        var backoff = RetryBackoff()
        var pauses: [RunReporter.NextAttempt] = []
        for _ in 0..<8 {
            pauses.append(RunReporter.afterFailure(.unavailable, now: t0, shutdownDeadline: nil, cancelled: false,
                                                   backoff: &backoff))
        }
        #expect(pauses == [100, 200, 400, 800, 1600, 3200, 5000, 5000].map { .retry(after: .milliseconds($0)) })
    }

    @Test("while stopping, a retry never sleeps past the shutdown deadline, and none follows it")
    func retriesEndAtTheShutdownDeadline() {
        var backoff = RetryBackoff(initial: .seconds(2))
        let deadline = t0 + .milliseconds(300)
        #expect(RunReporter.afterFailure(.unavailable, now: t0, shutdownDeadline: deadline, cancelled: false,
                                         backoff: &backoff) == .retry(after: .milliseconds(300)))
        #expect(RunReporter.afterFailure(.unavailable, now: deadline, shutdownDeadline: deadline, cancelled: false,
                                         backoff: &backoff) == .giveUpAtShutdown)
        #expect(RunReporter.afterFailure(.unavailable, now: t0, shutdownDeadline: deadline, cancelled: true,
                                         backoff: &backoff) == .giveUpAtShutdown, "the worker is exiting")
    }

    @Test("a refusal is not retried, nor anything once the worker's task is cancelled outside a stop")
    func refusalsAreNotRetried() {
        var backoff = RetryBackoff()
        #expect(RunReporter.afterFailure(.invalidInput, now: t0, shutdownDeadline: nil, cancelled: false,
                                         backoff: &backoff) == .giveUp)
        #expect(RunReporter.afterFailure(.invalidInput, now: t0, shutdownDeadline: t0, cancelled: false,
                                         backoff: &backoff) == .giveUp)
        #expect(RunReporter.afterFailure(.unavailable, now: t0, shutdownDeadline: nil, cancelled: true,
                                         backoff: &backoff) == .giveUp)
    }
}
