import Testing
import TockCore
@testable import TockRuntime
import TockTesting

@Suite("test signals")
struct TestSignalsTests {
    @Test("off until a test subscribes: a signal sent before is not even built")
    func offUntilSubscribed() async {
        let signals = TestSignals<Int>()
        let built = Locked(0)
        func build(_ value: Int) -> Int { built.withLock { $0 += 1 }; return value }
        signals.send(build(1))
        #expect(built.value == 0)
        let log = SignalLog(signals.subscribe())
        signals.send(build(2))
        #expect(built.value == 1)
        #expect(await log.next(2))
    }

    @Test("waiting for one kind of signal leaves the others for later waits, in the order they came")
    func takesByKind() async {
        let signals = TestSignals<String>()
        let log = SignalLog(signals.subscribe())
        for signal in ["claimed 1", "heartbeat", "claimed 2", "reported 1"] { signals.send(signal) }
        #expect(await log.next { $0.hasPrefix("reported") ? $0 : nil } == "reported 1")
        #expect(await log.next { $0.hasPrefix("claimed") ? $0 : nil } == "claimed 1")
        #expect(await log.next { $0.hasPrefix("claimed") ? $0 : nil } == "claimed 2")
        #expect(await log.next("heartbeat"))
        let later = Task { await log.next { $0.hasPrefix("claimed") ? $0 : nil } }
        signals.send("claimed 3")
        #expect(await later.value == "claimed 3")
        #expect(log.all.count == 5)
    }

    @Test("a wait for a signal that never comes ends at its timeout")
    func waitTimesOut() async {
        let signals = TestSignals<String>()
        let log = SignalLog(signals.subscribe())
        signals.send("heartbeat")
        #expect(await log.next(within: .milliseconds(50)) { $0 == "stopping" ? true : nil } == nil)
        #expect(await log.next("heartbeat"), "the signals it passed over stay")
    }
}
