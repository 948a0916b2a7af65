import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("worker pools: a job names a pool, a worker claims only the runs of the pools it serves")
struct WorkerPoolTests {
    static func job(_ name: String, pool: String?) -> JobDefinition {
        var job = JobDefinition(name: name, script: "x.sh")
        job.pool = pool
        return job
    }

    static func enqueue(_ database: Database, _ job: String, _ count: Int) async throws {
        _ = try await database.client.query(PostgresQuery(unsafeSQL: """
            SELECT tock.run_now('\(job)') FROM generate_series(1, \(count))
            """)).collect()
    }

    @Test("each worker claims its pools' runs only; a job moved to another pool takes its pending runs; history keeps the pool")
    func claimsByPool() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("extract", pool: "etl"))
            _ = try await database.createJob(Self.job("report", pool: "reports"))
            _ = try await database.createJob(Self.job("plain", pool: nil))
            for job in ["extract", "report", "plain"] { try await Self.enqueue(database, job, 3) }
            let plainWorker = try await database.registerWorker(host: "a", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
            let etlWorker = try await database.registerWorker(host: "b", pid: 2, concurrency: 10, scriptsDirectory: nil, version: nil,
                                                              pools: ["etl"])
            #expect(Set(try await database.claimRuns(worker: plainWorker, max: 10).map(\.jobName)) == ["plain"])
            let etl = try await database.claimRuns(worker: etlWorker, max: 10)
            #expect(etl.count == 3 && Set(etl.map(\.jobName)) == ["extract"])
            // Nobody serves 'reports': its runs wait, and the pool overview says so.
            struct Pool: Decodable, Equatable { var pool: String; var jobs: Int; var pending: Int; var running: Int; var workersAlive: Int }
            func pools() async throws -> [Pool] {
                try await database.client.query("SELECT row_to_json(p)::text FROM tock.pool_overview p ORDER BY pool")
                    .decode(String.self).all().map { try TockJSON.decoder().decode(Pool.self, from: Data($0.utf8)) }
            }
            #expect(try await pools() == [Pool(pool: "default", jobs: 1, pending: 0, running: 3, workersAlive: 1),
                                          Pool(pool: "etl", jobs: 1, pending: 0, running: 3, workersAlive: 1),
                                          Pool(pool: "reports", jobs: 1, pending: 3, running: 0, workersAlive: 0)])

            _ = try await database.updateJob("report", json: #"{"pool": "etl"}"#)
            // 'reports' has no job now and nothing in flight: gone from the overview.
            #expect(try await pools().map(\.pool) == ["default", "etl"])
            let moved = try await database.claimRuns(worker: etlWorker, max: 10)
            #expect(moved.count == 3 && Set(moved.map(\.jobName)) == ["report"])
            #expect(try await database.job("report").pool == "etl")

            // A run keeps the pool it ran in once it has ended.
            _ = try await database.finishRun(etl[0].runId, worker: etlWorker, outcome: RunOutcome(status: .succeeded, exitCode: 0))
            let pool = try await database.client.query("SELECT pool FROM tock.run_history WHERE id = \(etl[0].runId)")
                .decode(String.self).all()
            #expect(pool == ["etl"])
        }
    }

    @Test("a pending run of a pool no live worker serves shows as waiting for that pool, in tock.lag and the run itself")
    func waitingForPool() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("extract", pool: "etl"))
            _ = try await database.createJob(Self.job("plain", pool: nil))
            try await Self.enqueue(database, "extract", 2)
            try await Self.enqueue(database, "plain", 1)
            _ = try await database.registerWorker(host: "a", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
            let lag = try await database.lag()
            #expect(lag.map(\.pool) == ["default", "etl"])
            #expect(lag.map(\.waiting) == [1, 2])
            #expect(lag.map(\.workersAlive) == [1, 0])
            let runs = try await database.runs(job: "extract")
            #expect(try await database.run(runs[0].id).waitingForPool == "etl")
            #expect(try await database.run(runs[0].id).pool == "etl")
            let plain = try await database.runs(job: "plain")
            #expect(try await database.run(plain[0].id).waitingForPool == nil)
            // The gauges stay one per priority, however many pools share it.
            let waiting = try await database.client.query("""
                SELECT labels::text, value FROM tock.gauges() WHERE name = 'tock_queue_waiting_runs'
                """).decode((String, Double).self).all()
            #expect(waiting.count == 1 && waiting.first?.1 == 3)

            // A worker of the pool comes: the runs wait for their turn, no longer for a worker.
            let etlWorker = try await database.registerWorker(host: "b", pid: 2, concurrency: 10, scriptsDirectory: nil,
                                                              version: nil, pools: ["etl"])
            #expect(try await database.lag().map(\.workersAlive) == [1, 1])
            #expect(try await database.run(runs[0].id).waitingForPool == nil)
            let claimed = try await database.claimRuns(worker: etlWorker, max: 1)
            // A stopping worker claims nothing: the pool's pending run waits for a worker again; its running one
            // waits for nothing.
            try await database.setWorkerState(worker: etlWorker, state: "stopping")
            let pending = try #require(runs.map(\.id).first { $0 != claimed[0].runId })
            #expect(try await database.run(pending).waitingForPool == "etl")
            #expect(try await database.run(claimed[0].runId).waitingForPool == nil)
        }
    }

    @Test("a worker of two pools gives each its share of a claim, then the rest to the pool that has more")
    func sharesAmongPools() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("deep", pool: "p1"))
            _ = try await database.createJob(Self.job("shallow", pool: "p2"))
            try await Self.enqueue(database, "deep", 50)
            try await Self.enqueue(database, "shallow", 50)
            let worker = try await database.registerWorker(host: "a", pid: 1, concurrency: 100, scriptsDirectory: nil, version: nil,
                                                           pools: ["p1", "p2"])
            func claim(_ max: Int) async throws -> [String: Int] {
                try await database.claimRuns(worker: worker, max: max).reduce(into: [:]) { $0[$1.jobName, default: 0] += 1 }
            }
            #expect(try await claim(10) == ["deep": 5, "shallow": 5])
            _ = try await database.client.query("DELETE FROM tock.runs WHERE job_id = tock.find_job('shallow') AND status = 'pending' AND id % 15 <> 0").collect()
            let left = try await database.client.query("SELECT count(*)::int FROM tock.runs WHERE job_id = tock.find_job('shallow') AND status = 'pending'")
                .decode(Int.self).all().first ?? 0
            #expect(left > 0 && left < 5)
            #expect(try await claim(10) == ["deep": 10 - left, "shallow": left])
        }
    }

    @Test("a claim of fewer runs than the worker has pools still reaches every pool")
    func smallClaimsRotate() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("first", pool: "p1"))
            _ = try await database.createJob(Self.job("second", pool: "p2"))
            try await Self.enqueue(database, "first", 30)
            try await Self.enqueue(database, "second", 30)
            let worker = try await database.registerWorker(host: "a", pid: 1, concurrency: 100, scriptsDirectory: nil, version: nil,
                                                           pools: ["p1", "p2"])
            var seen: [String: Int] = [:]
            for _ in 0..<20 {
                for run in try await database.claimRuns(worker: worker, max: 1) { seen[run.jobName, default: 0] += 1 }
            }
            // Each claim starts at a random pool: both are reached (a miss is 2 in a million).
            #expect(seen["first", default: 0] > 0 && seen["second", default: 0] > 0 && seen.values.reduce(0, +) == 20, "\(seen)")
        }
    }

    @Test("a run handed back after its job moved to another pool goes to the new pool, and a worker of that pool runs it")
    func handedBackAfterMove() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("mover", pool: "old"))
            try await Self.enqueue(database, "mover", 1)
            let oldWorker = try await database.registerWorker(host: "a", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil,
                                                              pools: ["old"])
            let newWorker = try await database.registerWorker(host: "b", pid: 2, concurrency: 1, scriptsDirectory: nil, version: nil,
                                                              pools: ["new"])
            let run = try #require(try await database.claimRuns(worker: oldWorker, max: 1).first)
            _ = try await database.updateJob("mover", json: #"{"pool": "new"}"#)
            #expect(try await database.releaseRun(run.runId, worker: oldWorker))
            #expect(try await database.claimRuns(worker: oldWorker, max: 1).isEmpty)
            #expect(try await database.claimRuns(worker: newWorker, max: 1).map(\.runId) == [run.runId])
        }
    }

    @Test("a claim and the next delayed run read only the worker's pools, however many runs another pool holds")
    func otherPoolsUnread() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("big", pool: "big"))
            _ = try await database.createJob(Self.job("small", pool: "small"))
            _ = try await database.client.query("""
                INSERT INTO tock.runs (job_id, trigger, run_after, pool)
                SELECT tock.find_job('big'), 'sql', now() + (i % 2) * interval '1 hour', 'big' FROM generate_series(1, 20000) i
                """).collect()
            try await Self.enqueue(database, "small", 10)
            let worker = try await database.registerWorker(host: "a", pid: 1, concurrency: 100, scriptsDirectory: nil, version: nil,
                                                           pools: ["small"])
            #expect(try await database.nextDelayedRun(worker: worker) == nil)
            try await database.client.withConnection { connection in
                for statement in ["SELECT * FROM tock.claim_runs(\(worker), 100)", "SELECT tock.next_delayed_run(now(), \(worker))"] {
                    let read = try await PlanTests.read(connection, statement)
                    #expect(read.rows <= 200 && read.pages <= 400, "\(statement): read \(read)")
                }
            }
            #expect(try await database.claimRuns(worker: worker, max: 100).count == 10)
            // Every pool's: the big pool's delayed runs.
            #expect(try await database.nextDelayedRun() != nil)
        }
    }

    @Test("a run-now racing a move of its job to another pool ends in the new pool, whichever commits first")
    func runNowRacingAMove() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("mover", pool: "old"))
            let moved = try await database.client.withConnection { mover in
                _ = try await mover.query("BEGIN", logger: TestDatabase.logger).collect()
                // A plain UPDATE (the schema's owner may): tock.update_job happens to take locks that hid the race.
                _ = try await mover.query("UPDATE tock.jobs SET pool = 'new' WHERE name = 'mover'", logger: TestDatabase.logger).collect()
                // The run-now starts while the move is uncommitted: it reads the old pool.
                async let run = database.runNow("mover")
                try await Task.sleep(for: .milliseconds(300))
                _ = try await mover.query("COMMIT", logger: TestDatabase.logger).collect()
                return try await run
            }
            #expect(try await database.client.query("SELECT pool FROM tock.runs WHERE id = \(moved)").decode(String.self).all() == ["new"])
        }
    }

    @Test("a claim that took fewer runs than asked says when its pools' first run not yet due comes due, as of its own time")
    func claimTellsTheNextDelayedRun() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("soon", pool: nil))
            _ = try await database.createJob(Self.job("elsewhere", pool: "other"))
            _ = try await database.client.query("""
                INSERT INTO tock.runs (job_id, trigger, run_after)
                VALUES (tock.find_job('soon'), 'sql', now() + interval '1 minute')
                """).collect()
            _ = try await database.client.query("""
                INSERT INTO tock.runs (job_id, trigger, run_after, pool)
                VALUES (tock.find_job('elsewhere'), 'sql', now() + interval '30 seconds', 'other')
                """).collect()
            let due = try await database.client.query("SELECT run_after FROM tock.runs WHERE pool = 'default'").decode(Date.self).all()
            let worker = try await database.registerWorker(host: "a", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
            let idle = try await database.claim(worker: worker, max: 10)
            // Its own pool's run, not the other pool's sooner one.
            #expect(idle.runs.isEmpty && idle.nextDelayed == due.first)
            try await Self.enqueue(database, "soon", 3)
            let full = try await database.claim(worker: worker, max: 3)
            #expect(full.runs.count == 3 && full.nextDelayed == nil, "a full claim claims again as soon as slots free: it does not ask")
        }
    }

    @Test("pool names are checked: a job's, a worker's list (1 to 32 different pools)")
    func badPools() async throws {
        try await TestDatabase.withFresh { database, _ in
            for pool in ["", "two words", "1st", String(repeating: "p", count: 65), "semi;colon"] {
                let error = await #expect(throws: TockError.self) { _ = try await database.createJob(Self.job("j", pool: pool)) }
                #expect(error?.kind == .invalidInput && error?.field == "pool", "\(pool): \(String(describing: error))")
            }
            _ = try await database.createJob(Self.job("j", pool: "etl-2.x_y"))
            let edit = await #expect(throws: TockError.self) { _ = try await database.updateJob("j", json: #"{"pool": "no way"}"#) }
            #expect(edit?.field == "pool")
            for pools in [[], ["a", "a"], ["ok", "not ok"], ["x:1"], (1...33).map { "p\($0)" }] {
                let error = await #expect(throws: TockError.self) {
                    _ = try await database.registerWorker(host: "a", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil, pools: pools)
                }
                #expect(error?.kind == .invalidInput && error?.field == "pools", "\(pools): \(String(describing: error))")
            }
        }
    }
}
