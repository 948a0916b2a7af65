import Foundation
import Synchronization
import Testing
@testable import TockRuntime
import TockTesting

@Suite("monitor threads")
struct MonitorThreadsTests {
    @Test("every job runs, as parked threads are reused and retire while new jobs are handed to them")
    func handoffRacesRetirement() async throws {
        // Parked threads retire after 20 ms; bursts arrive every ~20 ms, so handing a job to a parked thread races
        // its retirement again and again. A job lost in that race would never finish.
        let pool = MonitorThreads(keepIdle: .milliseconds(20))
        let done = Atomic<Int>(0)
        let total = 3000
        for index in 0..<total {
            pool.run {
                if index % 5 == 0 { usleep(200) }
                done.add(1, ordering: .relaxed)
            }
            if index % 100 == 99 { try await Task.sleep(for: .milliseconds(Int.random(in: 15...25))) }
        }
        #expect(try await eventually(timeout: .seconds(20)) { done.load(ordering: .relaxed) == total },
                "\(done.load(ordering: .relaxed)) of \(total) jobs ran")
    }

    @Test("jobs that block run at the same time, each on a thread of its own")
    func blockedJobsRunTogether() async throws {
        let pool = MonitorThreads()
        let count = 200
        let arrived = Atomic<Int>(0)
        let release = DispatchSemaphore(value: 0)
        for _ in 0..<count {
            pool.run {
                arrived.add(1, ordering: .relaxed)
                release.wait()
            }
        }
        #expect(try await eventually(timeout: .seconds(20)) { arrived.load(ordering: .relaxed) == count })
        for _ in 0..<count { release.signal() }
    }
}
