/// Any `Clock<Duration>` behind one concrete type: what the worker and the scheduler read and sleep on.
/// Production passes `ContinuousClock()`; a test passes a clock it moves by hand (TockTesting's ManualClock), so
/// sweeps and heartbeats happen when the test says, not after a wall-clock wait.
///
/// A wrapper rather than a generic parameter: `Worker<C>` would make every mention of the worker name its clock,
/// and `any Clock<Duration>` alone cannot store or compare its instants. Instants here are durations since the
/// wrapped clock's reading at `init`, so they compare and subtract like any other clock's.
public struct AnyClock: Clock {
    public struct Instant: InstantProtocol {
        /// Time since the wrapped clock's reading when this AnyClock was made.
        public var offset: Duration

        public init(offset: Duration) { self.offset = offset }

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public static func + (lhs: Instant, rhs: Duration) -> Instant { lhs.advanced(by: rhs) }
        public static func += (lhs: inout Instant, rhs: Duration) { lhs = lhs + rhs }
        public static func - (lhs: Instant, rhs: Duration) -> Instant { lhs.advanced(by: .zero - rhs) }
        public static func -= (lhs: inout Instant, rhs: Duration) { lhs = lhs - rhs }
        public static func - (lhs: Instant, rhs: Instant) -> Duration { rhs.duration(to: lhs) }
    }

    private let read: @Sendable () -> Duration
    private let sleepUntil: @Sendable (Duration, Duration?) async throws -> Void
    public let minimumResolution: Duration

    public init<C: Clock<Duration>>(_ clock: C) {
        let origin = clock.now
        read = { origin.duration(to: clock.now) }
        sleepUntil = { offset, tolerance in try await clock.sleep(until: origin.advanced(by: offset), tolerance: tolerance) }
        minimumResolution = clock.minimumResolution
    }

    public var now: Instant { Instant(offset: read()) }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await sleepUntil(deadline.offset, tolerance)
    }
}
