/// How long to wait before trying again after a failure: `initial`, doubling per failure up to `maximum`;
/// `reset()` after a success. Every loop that retries the database uses one, so none spins on an outage.
public struct RetryBackoff: Sendable, Equatable {
    public let initial: Duration
    public let maximum: Duration
    public private(set) var current: Duration

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
        self.current = initial
    }

    /// The wait before the next attempt; the one after will be twice as long, up to the maximum.
    public mutating func next() -> Duration {
        defer { current = min(current * 2, maximum) }
        return current
    }

    public mutating func reset() {
        current = initial
    }
}
