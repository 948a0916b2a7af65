import Dispatch
import Foundation
import Synchronization
import TockCore

/// Threads for the scripts' monitor loops, which block in poll() for as long as a script runs: one thread per
/// running script, however many there are, each parked for `keepIdle` after its script ends so that the next
/// script reuses it. A thread started per script cost its stack's mmap and munmap on every run. Not libdispatch:
/// on Linux its pool grows by a few threads at a time (400 blocked items ran at most 39 at once), and every
/// running script needs its monitor now, to drain its output and enforce its timeout.
final class MonitorThreads: Sendable {
    /// A parked thread; `job` is written under the pool's lock before `wake` is signalled.
    private final class Parked: @unchecked Sendable {
        let wake = DispatchSemaphore(value: 0)
        var job: (@Sendable () -> Void)?
    }

    private let parked = Mutex<[Parked]>([])
    private let keepIdle: DispatchTimeInterval

    init(keepIdle: Duration = .seconds(30)) {
        self.keepIdle = .milliseconds(Int(keepIdle.wholeMilliseconds))
    }

    func run(_ job: @escaping @Sendable () -> Void) {
        let handed: Parked? = parked.withLock { parked in
            guard let thread = parked.popLast() else { return nil }
            thread.job = job
            return thread
        }
        if let handed {
            handed.wake.signal()
            return
        }
        let thread = Thread { self.serve(job) }
        thread.name = "tock-script-monitor"
        thread.start()
    }

    private func serve(_ first: @escaping @Sendable () -> Void) {
        let me = Parked()
        var job = first
        while true {
            job()
            parked.withLock { $0.append(me) }
            if me.wake.wait(timeout: .now() + keepIdle) == .timedOut {
                let retired = parked.withLock { parked in
                    guard let index = parked.firstIndex(where: { $0 === me }) else { return false }
                    parked.remove(at: index)
                    return true
                }
                if retired { return }
                // Handed a job at the moment the wait timed out: its signal is on the way.
                me.wake.wait()
            }
            guard let next = parked.withLock({ _ in defer { me.job = nil }; return me.job }) else { return }
            job = next
        }
    }
}
