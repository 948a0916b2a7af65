import Foundation
import Synchronization

/// Wakes one waiting loop early: notifications, finished runs and shutdown call `signal()`; the loop calls
/// `wait(until:)`. A signal sent while nobody waits is kept, so no wake-up is lost between two waits.
public final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var waiterID = 0
        /// The wait whose deadline passed before it began to wait (a deadline already past, or a timer quicker than
        /// the waiter): it returns at once rather than wait for a timer that has fired.
        var expiredID = 0
    }

    private let state = Mutex(State())
    /// What the timeouts are measured on.
    public let clock: AnyClock

    public init(clock: AnyClock = AnyClock(ContinuousClock())) {
        self.clock = clock
    }

    public func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns at the next signal (or at once if one is pending), after `timeout`, or when the task is cancelled.
    public func wait(timeout: Duration) async {
        await wait(until: clock.now + timeout)
    }

    /// Returns at the next signal (or at once if one is pending), at `deadline`, or when the task is cancelled. A
    /// deadline taken before the waiter tells anyone it waits holds however late the wait itself begins: a test that
    /// moves a manual clock past it once told wakes the waiter, whenever it gets here.
    public func wait(until deadline: AnyClock.Instant) async {
        if state.withLock({ state in defer { state.pending = false }; return state.pending }) { return }
        let id = state.withLock { state in
            state.waiterID += 1
            return state.waiterID
        }
        let timer = Task { [weak self] in
            guard let clock = self?.clock, (try? await clock.sleep(until: deadline)) != nil else { return }
            self?.resume(ifWaiting: id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled || state.expiredID == id {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.resume(ifWaiting: id)
        }
        timer.cancel()
    }

    private func resume(ifWaiting id: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.waiterID == id else { return nil }
            guard let waiter = state.waiter else {
                state.expiredID = id
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
