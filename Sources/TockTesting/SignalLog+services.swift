import Foundation
import TockCore
import TockRuntime

/// The worker's signals a test waits for most, taken as `next` takes them (see SignalLog).
extension SignalLog where Signal == Worker.Signal {
    /// The runs of the next claim's answer; with `taking: true`, of the next answer that took any.
    public func claimed(taking: Bool = false, within timeout: Duration = .seconds(30)) async -> [Int64]? {
        await next(within: timeout) { signal -> [Int64]? in
            guard case .claimed(let runs) = signal, !taking || !runs.isEmpty else { return nil }
            return runs
        }
    }

    /// How the database recorded `run`'s end.
    public func reported(_ run: Int64, within timeout: Duration = .seconds(30)) async -> RunStatus? {
        await next(within: timeout) { signal -> RunStatus? in
            guard case .reported(run, let status) = signal else { return nil }
            return status
        }
    }

    /// The next heartbeat: whether it said which runs the worker holds (a heartbeat during a claim does not); nil
    /// when none came.
    public func heartbeat(within timeout: Duration = .seconds(30)) async -> (knewHeldRuns: Bool, held: [Int64])? {
        await next(within: timeout) { signal -> (knewHeldRuns: Bool, held: [Int64])? in
            guard case .heartbeat(let held) = signal else { return nil }
            return (held != nil, held ?? [])
        }
    }
}

extension SignalLog where Signal == Scheduler.Signal {
    /// The next tick's next fire time (`.some(nil)`: none); nil when no tick came.
    public func ticked(within timeout: Duration = .seconds(30)) async -> Date?? {
        await next(within: timeout) { signal -> Date?? in
            guard case .ticked(let next) = signal else { return nil }
            return .some(next)
        }
    }
}
