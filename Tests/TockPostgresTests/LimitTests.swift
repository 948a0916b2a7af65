import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("limits: at most N running and N starts per period, per pool and per job, across every worker")
struct LimitTests {
    static func job(_ name: String, pool: String? = nil, maxRunning: Int? = nil, rate: String? = nil) -> JobDefinition {
        var job = JobDefinition(name: name, script: "x.sh")
        (job.pool, job.maxRunning, job.rate) = (pool, maxRunning, rate)
        return job
    }

    static func worker(_ database: Database, _ pid: Int, pools: [String] = ["default"]) async throws -> Int64 {
        try await database.registerWorker(host: "h", pid: pid, concurrency: 100, scriptsDirectory: nil, version: nil, pools: pools)
    }

    static func finish(_ database: Database, _ run: ClaimedRun, worker: Int64) async throws {
        _ = try await database.finishRun(run.runId, worker: worker, outcome: RunOutcome(status: .succeeded, exitCode: 0))
    }

    @Test("a pool's max_running holds against claims racing from three workers; an ended run makes room, and wakes the workers")
    func poolMaxRunning() async throws {
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(Self.job("extract", pool: "etl"))
            _ = try await database.createJob(Self.job("other"))
            _ = try await database.setPool("etl", changes: ["max_running": .integer(2)])
            try await WorkerPoolTests.enqueue(database, "extract", 20)
            try await WorkerPoolTests.enqueue(database, "other", 5)
            var workers: [Int64] = []
            for pid in 1...3 { workers.append(try await Self.worker(database, pid, pools: ["etl", "default"])) }
            // Three claims at once, each with room for every run: two runs of etl in all, every run of the other pool.
            let claims = try await withThrowingTaskGroup(of: [ClaimedRun].self) { group in
                for worker in workers { group.addTask { try await database.claimRuns(worker: worker, max: 25) } }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claims.filter { $0.jobName == "extract" }.count == 2)
            #expect(claims.filter { $0.jobName == "other" }.count == 5)
            #expect(try await database.pools().first { $0.pool == "etl" }?.maxRunning == 2)
            for worker in workers { #expect(try await database.claimRuns(worker: worker, max: 25).isEmpty) }

            // The end of a run of a limited pool is what lets the next one start: it NOTIFYs tock_runs.
            let watch = try await NotificationWatch.start(settings: settings, channel: "tock_runs")
            let ended = try #require(claims.first { $0.jobName == "extract" })
            let holder = try #require(try await database.run(ended.runId).workerId)
            try await Self.finish(database, ended, worker: holder)
            #expect(try await eventually { !watch.payloads.isEmpty }, "the end of a limited pool's run woke no worker")
            await watch.stop()
            #expect(try await database.claimRuns(worker: workers[2], max: 25).map(\.jobName) == ["extract"])
            #expect(try await database.claimRuns(worker: workers[0], max: 25).isEmpty)

            // Raised, the limit lets more start; removed, every run may.
            _ = try await database.setPool("etl", changes: ["max_running": .integer(5)])
            #expect(try await database.claimRuns(worker: workers[1], max: 25).count == 3)
            let cleared = try await database.setPool("etl", changes: ["max_running": JobChange.none])
            #expect(cleared.maxRunning == nil)
            #expect(try await database.claimRuns(worker: workers[1], max: 25).count == 14)
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.pools").decode(Int.self).all() == [0])
        }
    }

    @Test("a job's max_running holds its runs to N while other jobs of its pool take the rest of the claim")
    func jobMaxRunning() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("heavy", maxRunning: 3))
            _ = try await database.createJob(Self.job("light"))
            try await WorkerPoolTests.enqueue(database, "heavy", 10)
            try await WorkerPoolTests.enqueue(database, "light", 10)
            let (first, second) = (try await Self.worker(database, 1), try await Self.worker(database, 2))
            async let claimA = database.claimRuns(worker: first, max: 8)
            async let claimB = database.claimRuns(worker: second, max: 8)
            var claimed = try await claimA + claimB
            // A claim that found the pool's lock taken passed it over (its worker looks again at once): again,
            // until nothing more may start.
            for _ in 0..<5 { claimed += try await database.claimRuns(worker: second, max: 8) }
            #expect(claimed.filter { $0.jobName == "heavy" }.count == 3)
            #expect(claimed.filter { $0.jobName == "light" }.count == 10)
            #expect(try await database.job("heavy").maxRunning == 3)
            // A heavy run that fails and is retried still counts once it runs again; edited to 4, one more starts.
            _ = try await database.updateJob("heavy", changes: ["max_running": .integer(4)])
            #expect(try await database.claimRuns(worker: first, max: 8).map(\.jobName) == ["heavy"])
            _ = try await database.updateJob("heavy", changes: ["max_running": JobChange.none])
            #expect(try await database.claimRuns(worker: first, max: 8).count == 6)
        }
    }

    @Test("a rate allows N starts per period, counted across workers and finished runs; the worker sleeps until there is room")
    func rateLimit() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("polite", rate: "2/1m"))
            _ = try await database.createJob(Self.job("burst", pool: "api"))
            _ = try await database.setPool("api", changes: ["rate": .text("3/30s")])
            try await WorkerPoolTests.enqueue(database, "polite", 5)
            try await WorkerPoolTests.enqueue(database, "burst", 5)
            let worker = try await Self.worker(database, 1, pools: ["default", "api"])
            let other = try await Self.worker(database, 2, pools: ["default", "api"])
            let claimed = try await database.claimRuns(worker: worker, max: 10)
            #expect(claimed.filter { $0.jobName == "polite" }.count == 2)
            #expect(claimed.filter { $0.jobName == "burst" }.count == 3)
            for run in claimed { try await Self.finish(database, run, worker: worker) }
            // Finished, they still count within the period, for every worker.
            #expect(try await database.claimRuns(worker: other, max: 10).isEmpty)
            #expect(try await database.job("polite").rate == "2/1m")
            // Nothing wakes an idle worker when a period frees room: it sleeps until then (the pool's 30 s first).
            let wake = try #require(try await database.nextDelayedRun(worker: other))
            #expect(wake.timeIntervalSinceNow > 20 && wake.timeIntervalSinceNow <= 31, "wakes in \(wake.timeIntervalSinceNow) s")
            // 31 s later for the pool: three more burst runs may start, polite's minute is not over.
            _ = try await database.client.query("UPDATE tock.limit_starts SET started_at = started_at - interval '31 seconds' WHERE scope = 'pool:api'").collect()
            #expect(try await database.claimRuns(worker: other, max: 10).map(\.jobName) == ["burst", "burst"])
            _ = try await database.client.query("UPDATE tock.limit_starts SET started_at = started_at - interval '61 seconds'").collect()
            #expect(try await database.claimRuns(worker: other, max: 10).map(\.jobName) == ["polite", "polite"])
            // The log keeps a period's starts, no more.
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.limit_starts").decode(Int.self).all() == [2])
        }
    }

    @Test("a claim never waits for a limited pool's lock: it passes the pool over and says to look again in a moment")
    func lockedPoolPassedOver() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(Self.job("limited", pool: "etl", maxRunning: 5, rate: "100/1m"))
            _ = try await database.createJob(Self.job("free"))
            try await WorkerPoolTests.enqueue(database, "limited", 3)
            try await WorkerPoolTests.enqueue(database, "free", 3)
            let worker = try await Self.worker(database, 1, pools: ["etl", "default"])
            // A session that took the pool's lock and idles in its transaction (any login may take an advisory lock).
            try await database.client.withConnection { holder in
                _ = try await holder.query("BEGIN", logger: TestDatabase.logger).collect()
                _ = try await holder.query("SELECT pg_advisory_xact_lock(tock.worker_lock_key() + 4, hashtext('etl'))",
                                           logger: TestDatabase.logger).collect()
                let claim = try await database.claim(worker: worker, max: 10)
                #expect(claim.runs.map(\.jobName) == ["free", "free", "free"])
                let again = try #require(claim.nextDelayed)
                #expect(again.timeIntervalSinceNow < 2, "look again in \(again.timeIntervalSinceNow) s")
                _ = try await holder.query("ROLLBACK", logger: TestDatabase.logger).collect()
            }
            #expect(try await database.claim(worker: worker, max: 10).runs.map(\.jobName) == ["limited", "limited", "limited"])
            // A deleted job's starts go with it.
            _ = try await database.deleteJob("limited")
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.limit_starts").decode(Int.self).all() == [0])
        }
    }

    @Test("bad limits are refused, naming the field: through a job's fields, a pool's, and the rate's text")
    func badLimits() async throws {
        try await TestDatabase.withFresh { database, _ in
            for (json, field) in [(#"{"name": "j", "script": "x.sh", "max_running": 0}"#, "max_running"),
                                  (#"{"name": "j", "script": "x.sh", "max_running": 1.5}"#, "max_running"),
                                  (#"{"name": "j", "script": "x.sh", "max_running": "2"}"#, "max_running"),
                                  (#"{"name": "j", "script": "x.sh", "rate": "10"}"#, "rate"),
                                  (#"{"name": "j", "script": "x.sh", "rate": "0/1m"}"#, "rate"),
                                  (#"{"name": "j", "script": "x.sh", "rate": "5/2d"}"#, "rate"),
                                  (#"{"name": "j", "script": "x.sh", "rate": "5/0s"}"#, "rate"),
                                  (#"{"name": "j", "script": "x.sh", "rate": 5}"#, "rate")] {
                let error = await #expect(throws: TockError.self) { _ = try await database.createJob(json: json) }
                #expect(error?.kind == .invalidInput && error?.field == field, "\(json): \(String(describing: error))")
            }
            for (changes, field) in [(["max_running": JobChange.integer(-1)], "max_running"), (["rate": .text("fast")], "rate"),
                                     (["rate": .integer(3)], "rate"), (["burst": .integer(3)], "burst")] {
                let error = await #expect(throws: TockError.self) { _ = try await database.setPool("etl", changes: changes) }
                #expect(error?.kind == .invalidInput && error?.field == field, "\(changes): \(String(describing: error))")
            }
            let badName = await #expect(throws: TockError.self) { _ = try await database.setPool("no way", changes: ["max_running": .integer(1)]) }
            #expect(badName?.field == "pool")
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.pools").decode(Int.self).all() == [0])
            // Every spelling people use reads the same.
            for (text, shown) in [("10/1m", "10/1m"), ("10 / 60s", "10/1m"), ("100/1h", "100/1h"), ("5/30 seconds", "5/30s"),
                                  ("1000/d", "1000/1d"), ("3/2 minutes", "3/2m")] {
                let info = try await database.setPool("p", changes: ["rate": .text(text)])
                #expect(info.rate == shown, "\(text)")
            }
        }
    }
}
