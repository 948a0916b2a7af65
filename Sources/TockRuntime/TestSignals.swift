import Synchronization

/// What a service did, published for tests (River's testSignals): a test subscribes before it runs the service and
/// awaits the events instead of polling or reading logs. Off until the first subscription, and then only a load of
/// one flag per event: the event itself is not even built while nobody listens.
public final class TestSignals<Signal: Sendable>: Sendable {
    private let on = Atomic<Bool>(false)
    private let subscribers = Mutex<[AsyncStream<Signal>.Continuation]>([])

    public init() {}

    /// Every event from now on, in the order the service sent them; none is dropped.
    public func subscribe() -> AsyncStream<Signal> {
        let (stream, continuation) = AsyncStream.makeStream(of: Signal.self)
        subscribers.withLock { $0.append(continuation) }
        on.store(true, ordering: .releasing)
        return stream
    }

    func send(_ signal: @autoclosure () -> Signal) {
        guard on.load(ordering: .acquiring) else { return }
        let signal = signal()
        subscribers.withLock { subscribers in
            for subscriber in subscribers { subscriber.yield(signal) }
        }
    }
}
