import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

@Suite("scheduler")
struct SchedulerTests {
    @Test("a due job whose NOTIFY was lost is enqueued by the safety sweep once its interval passes on the scheduler's clock")
    func sweepEnqueuesWithoutNotify() async throws {
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.client.fetch(
                "ALTER TABLE tock.jobs DISABLE TRIGGER jobs_notify_earlier", logger: database.logger)
            _ = try await database.createJob(JobDefinition(name: "hourly", script: "x.sh", schedule: "every 1h"))
            let clock = ManualClock()
            let scheduler = Scheduler(database: database, settings: settings, sweepInterval: .seconds(60),
                                      clock: clock, logger: TestDatabase.logger)
            let signals = SignalLog(scheduler.testSignals.subscribe())
            try await withServices([scheduler]) { () async throws -> Void in
                // Listening, then a tick after it: the scheduler sleeps until the job's hour or the sweep.
                #expect(await signals.next(.listening))
                #expect(await signals.ticked() != nil)
                #expect(await signals.ticked() != nil)
                // Due now, and nothing tells the scheduler: its NOTIFY trigger is off in this database.
                _ = try await database.client.fetch(
                    "UPDATE tock.jobs SET next_run_at = now() WHERE name = 'hourly'", logger: database.logger)
                #expect(try await database.runs(job: "hourly").isEmpty)
                clock.advance(by: .seconds(60))
                #expect(await signals.ticked() != nil)
                let runs = try await database.runs(job: "hourly")
                #expect(runs.map(\.trigger) == ["schedule"])
            }
        }
    }
}
