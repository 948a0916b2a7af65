import Testing
import TockCore
import TockRuntime
import TockTesting

/// The clock the services sleep on, and the manual one tests move.
@Suite("clocks")
struct ClockTests {
    @Test("a sleep on a manual clock ends when the clock reaches its deadline, not before")
    func manualSleepEndsAtItsDeadline() async throws {
        let clock = ManualClock()
        let woke = Locked(false)
        let sleeper = Task {
            try await clock.sleep(until: clock.now + .seconds(60))
            woke.set(true)
        }
        #expect(try await eventually { clock.sleepers == 1 })
        clock.advance(by: .seconds(59))
        #expect(clock.sleepers == 1 && !woke.value)
        clock.advance(by: .seconds(1))
        try await sleeper.value
        #expect(woke.value && clock.sleepers == 0)
    }

    @Test("a cancelled sleep on a manual clock throws and stops waiting for the clock")
    func manualSleepCancelled() async throws {
        let clock = ManualClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(60)) }
        #expect(try await eventually { clock.sleepers == 1 })
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(clock.sleepers == 0)
    }

    @Test("AnyClock reads and sleeps on the clock it wraps")
    func anyClockFollowsItsClock() async throws {
        let manual = ManualClock()
        let clock = AnyClock(manual)
        let start = clock.now
        manual.advance(by: .seconds(5))
        #expect(clock.now - start == .seconds(5))
        let sleeper = Task { try await clock.sleep(until: start + .seconds(8)) }
        #expect(try await eventually { manual.sleepers == 1 })
        manual.advance(by: .seconds(3))
        try await sleeper.value
        #expect(clock.now - start == .seconds(8))
    }

    @Test("a wake-up deadline taken before the wait holds however late the wait begins; a signal ends a wait at once")
    func wakeSignalDeadlines() async throws {
        let manual = ManualClock()
        let wake = WakeSignal(clock: AnyClock(manual))
        let deadline = wake.clock.now + .seconds(60)
        manual.advance(by: .seconds(60))
        await wake.wait(until: deadline)  // returns: the deadline passed before the wait began

        let waited = Task { await wake.wait(timeout: .seconds(60)) }
        #expect(try await eventually { manual.sleepers == 1 })
        wake.signal()
        await waited.value
        #expect(manual.sleepers == 0, "the wait's timer stopped with it")
    }
}
