import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

@Suite("limits under real workers")
struct LimitWorkerTests {
    /// 3 workers of concurrency 8 serving `pools`, all alive before `body` enqueues anything: 24 slots racing for
    /// runs that limits hold back.
    static func withRacingWorkers(_ database: Database, _ settings: ConnectionSettings, _ directory: String,
                                  pools: [String], _ body: @Sendable () async throws -> Void) async throws {
        var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
        configuration.concurrency = 8
        configuration.pools = pools
        let workers = try (1...3).map { _ in
            try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
        }
        try await withServices(workers) { () async throws -> Void in
            #expect(try await eventually { try await database.workers().filter(\.alive).count == 3 })
            try await body()
        }
    }

    @Test("3 workers × concurrency 8, a pool limited to 2 and a job to 3: sampled all along, never more running; every run succeeds")
    func limitsHoldAcrossRacingWorkers() async throws {
        let directory = try makeScriptsDirectory(["work.sh": "#!/bin/sh\nsleep 0.3\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var extract = JobDefinition(name: "extract", script: "work.sh")
            extract.pool = "etl"
            var heavy = JobDefinition(name: "heavy", script: "work.sh")
            heavy.maxRunning = 3
            _ = try await database.createJob(extract)
            _ = try await database.createJob(heavy)
            _ = try await database.createJob(JobDefinition(name: "free", script: "work.sh"))
            _ = try await database.setPool("etl", changes: ["max_running": .integer(2)])
            try await Self.withRacingWorkers(database, settings, directory, pools: ["etl", "default"]) {
                _ = try await database.client.query("""
                    SELECT tock.run_now(j) FROM unnest(ARRAY['extract', 'heavy', 'free']) j, generate_series(1, 12)
                    """).collect()
                // Sampled as fast as a query answers, until every run has ended: the most of each running at once.
                var most = ["etl": 0, "heavy": 0, "free": 0]
                var samples = 0
                let deadline = ContinuousClock.now + .seconds(60)
                while ContinuousClock.now < deadline {
                    let row = try await database.client.query("""
                        SELECT count(*) FILTER (WHERE pool = 'etl' AND status = 'running')::int,
                               count(*) FILTER (WHERE job_id = tock.find_job('heavy') AND status = 'running')::int,
                               count(*) FILTER (WHERE job_id = tock.find_job('free') AND status = 'running')::int,
                               count(*)::int
                        FROM tock.runs
                        """).decode((Int, Int, Int, Int).self).all()
                    let (etl, heavyRunning, free, inFlight) = try #require(row.first)
                    (most["etl"], most["heavy"], most["free"]) = (max(most["etl"]!, etl), max(most["heavy"]!, heavyRunning),
                                                                  max(most["free"]!, free))
                    samples += 1
                    if inFlight == 0 { break }
                }
                print("limitsHoldAcrossRacingWorkers: \(samples) samples, most running \(most)")
                #expect(most["etl"] == 2, "the pool's limit is 2, and 12 runs waited")
                #expect(most["heavy"] == 3, "the job's limit is 3, and 12 runs waited")
                // An unlimited job has room for all its runs beside them (8 × 3 slots, 5 taken by the limited ones).
                #expect(most["free"]! > 3)
                let ended = try await database.client.query("""
                    SELECT status, count(*)::int FROM tock.run_history GROUP BY status
                    """).decode((String, Int).self).all()
                #expect(ended.map { $0.0 } == ["succeeded"] && ended.first?.1 == 36, "\(ended)")
            }
        }
    }
    @Test("3 workers × concurrency 8, a pool limited to 4 starts and a job to 3 per 2 s: no 2-second window holds more starts")
    func ratesHoldAcrossRacingWorkers() async throws {
        let directory = try makeScriptsDirectory(["tick.sh": "#!/bin/sh\nsleep 0.1\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var paced = JobDefinition(name: "paced", script: "tick.sh")
            paced.pool = "paced"
            var metered = JobDefinition(name: "metered", script: "tick.sh")
            metered.rate = "3/2s"
            _ = try await database.createJob(paced)
            _ = try await database.createJob(metered)
            _ = try await database.setPool("paced", changes: ["rate": .text("4/2s")])
            try await Self.withRacingWorkers(database, settings, directory, pools: ["paced", "default"]) {
                _ = try await database.client.query("""
                    SELECT tock.run_now(j) FROM unnest(ARRAY['paced', 'metered']) j, generate_series(1, 12)
                    """).collect()
                // 12 runs each at 4 and 3 per 2 s: about 6 and 8 s, with every slot free all along.
                #expect(try await eventually(timeout: .seconds(90)) {
                    try await database.client.query("SELECT count(*)::int FROM tock.run_history WHERE status = 'succeeded'")
                        .decode(Int.self).all().first == 24
                })
                // The most starts in any 2-second window, from each start on (the claim's time is started_at).
                let most = try await database.client.query("""
                    SELECT j.name, max((SELECT count(*) FROM tock.run_history b
                                        WHERE b.job_id = a.job_id AND b.started_at >= a.started_at
                                          AND b.started_at < a.started_at + interval '2 seconds'))::int
                    FROM tock.run_history a JOIN tock.jobs j ON j.id = a.job_id GROUP BY j.name ORDER BY j.name
                    """).decode((String, Int).self).all()
                print("ratesHoldAcrossRacingWorkers: most starts in 2 s \(most)")
                #expect(most.map(\.0) == ["metered", "paced"])
                #expect(most.map(\.1) == [3, 4], "the job's rate is 3 and the pool's 4 per 2 s, and 12 runs of each waited")
            }
        }
    }
}
