import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TockCore
import TockPostgres

/// One LISTEN on `tock_events` for the whole API server, fanned out to every `/api/v1/events` subscriber.
/// After every (re)connect it sends `{"type": "resync"}`: events sent while it was away are lost, so pages
/// re-read everything. A comment line every `keepAlive` lets a subscriber's dead connection be noticed.
public final class EventHub: Service, Sendable {
    public enum Message: Sendable, Equatable {
        case event(String)
        case keepAlive
    }

    let listener: NotificationListener
    let keepAlive: Duration
    /// nil once the hub has stopped: a late subscriber gets a stream that has already ended.
    let subscribers = Mutex<[Int: AsyncStream<Message>.Continuation]?>([:])
    let nextID = Atomic<Int>(0)

    /// `follow`: the process's follower of the primary, when its settings name several servers.
    public init(settings: ConnectionSettings, follow: PrimaryClient? = nil, logger: Logger, keepAlive: Duration = .seconds(15)) {
        var listener = NotificationListener(settings: settings, channels: ["tock_events"], logger: logger)
        listener.follow = follow
        self.listener = listener
        self.keepAlive = keepAlive
    }

    public func run() async throws {
        let listening = Task { [listener] in
            await listener.run { event in
                switch event {
                case .listening: self.broadcast(.event(#"{"type": "resync"}"#))
                case .notification(_, let payload): self.broadcast(.event(payload))
                case .notificationsUnavailable: break  // the listener has logged it; live views update on reload
                }
            }
        }
        let keepingAlive = Task { [keepAlive] in
            while (try? await Task.sleep(for: keepAlive)) != nil { self.broadcast(.keepAlive) }
        }
        try? await gracefulShutdown()
        // Every open event stream ends first, so the HTTP server's own shutdown does not wait on them.
        let open = subscribers.withLock { subscribers in defer { subscribers = nil }; return subscribers ?? [:] }
        for continuation in open.values { continuation.finish() }
        keepingAlive.cancel()
        listening.cancel()
        // The listener ends at once unless it is in a connect, which may not heed cancellation (a loaded machine, a
        // server away): then it is abandoned, not awaited, so the process still exits (once, under stress-ng, the
        // open stream and the exit waited on it for more than 30 s).
        _ = try? await awaitAbandoning(timeout: .seconds(2)) { await listening.value }
    }

    /// A new subscriber's stream; it ends when the hub stops or `unsubscribe(id)` is called. A subscriber that
    /// falls far behind loses the oldest events, not the server's memory.
    public func subscribe() -> (id: Int, messages: AsyncStream<Message>) {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<Message>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let added = subscribers.withLock { subscribers in
            subscribers?[id] = continuation
            return subscribers != nil
        }
        if !added { continuation.finish() }
        return (id, stream)
    }

    public func unsubscribe(_ id: Int) {
        subscribers.withLock { $0?.removeValue(forKey: id) }?.finish()
    }

    public var subscriberCount: Int { subscribers.withLock { $0?.count ?? 0 } }

    func broadcast(_ message: Message) {
        for continuation in subscribers.withLock({ Array(($0 ?? [:]).values) }) { continuation.yield(message) }
    }
}
