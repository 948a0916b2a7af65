import Synchronization

/// A service's test signals (Worker.testSignals, Scheduler.testSignals) as they come, kept from the moment the test
/// subscribed: `next` takes the first one that matches and no earlier call took, waiting for it if it has not come
/// yet, so a test awaits what the service did instead of polling for it or reading its log. As River's testSignals:
/// waiting for one kind of signal leaves the others for later calls, whatever order they came in.
public final class SignalLog<Signal: Sendable>: Sendable {
    private let storage = Storage()
    private let reader: Task<Void, Never>

    public init(_ signals: AsyncStream<Signal>) {
        reader = Task { [storage] in
            for await signal in signals { storage.append(signal) }
        }
    }

    deinit { reader.cancel() }

    /// Every signal so far.
    public var all: [Signal] { storage.state.withLock { $0.all } }

    /// What `match` makes of the first signal it matches that no earlier call took; nil when none came within
    /// `timeout`.
    public func next<T: Sendable>(within timeout: Duration = .seconds(30),
                                  _ match: @escaping @Sendable (Signal) -> T?) async -> T? {
        let id = storage.state.withLock { state in
            state.lastID += 1
            return state.lastID
        }
        let timer = Task { [storage] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            storage.expire(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let now: T?? = storage.state.withLock { state in
                for index in state.all.indices where !state.taken.contains(index) {
                    if let value = match(state.all[index]) {
                        state.taken.insert(index)
                        return .some(value)
                    }
                }
                if state.expired.contains(id) { return .some(nil) }
                state.waiter = Waiter(id: id, offer: { signal in
                    guard let value = match(signal) else { return false }
                    continuation.resume(returning: value)
                    return true
                }, expire: { continuation.resume(returning: nil) })
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Whether `signal` came (and no earlier call took it) within `timeout`.
    public func next(_ signal: Signal, within timeout: Duration = .seconds(30)) async -> Bool where Signal: Equatable {
        await next(within: timeout) { $0 == signal ? true : nil } ?? false
    }

    private struct Waiter {
        let id: Int
        /// Takes the signal and resumes the waiting `next` when it matches (then true).
        let offer: @Sendable (Signal) -> Bool
        let expire: @Sendable () -> Void
    }

    private struct State {
        var all: [Signal] = []
        /// The indices in `all` of the signals a `next` took.
        var taken: Set<Int> = []
        var waiter: Waiter?
        var lastID = 0
        var expired: Set<Int> = []
    }

    private final class Storage: Sendable {
        let state = Mutex(State())

        func append(_ signal: Signal) {
            state.withLock { state in
                state.all.append(signal)
                guard let waiter = state.waiter, waiter.offer(signal) else { return }
                state.waiter = nil
                state.taken.insert(state.all.count - 1)
            }
        }

        func expire(_ id: Int) {
            let waiter = state.withLock { state -> Waiter? in
                guard let waiter = state.waiter, waiter.id == id else {
                    state.expired.insert(id)
                    return nil
                }
                state.waiter = nil
                return waiter
            }
            waiter?.expire()
        }
    }
}
