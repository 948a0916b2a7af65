import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// Moves a run through claim and finish at a chosen time, as a worker would have then.
func finishedRun(_ database: Database, job: String, at time: String, status: String = "succeeded") async throws -> Int64 {
    let client = database.client
    let run = try #require(try await client.query(
        "SELECT tock.run_now(\(job), 'sql', (\(unescaped: time)))").decode(Int64.self).all().first)
    let worker = try #require(try await client.query(
        "SELECT tock.register_worker('old', 1, 1, NULL, NULL, (\(unescaped: time)))").decode(Int64.self).all().first)
    _ = try await client.query("SELECT * FROM tock.claim_runs(\(worker), 1, (\(unescaped: time)))").collect()
    _ = try await client.query("""
        SELECT tock.finish_run(\(run), \(worker), \(status), 0, NULL, 'output', 6, false, (\(unescaped: time)) + interval '1 second')
        """).collect()
    _ = try await client.query("SELECT tock.set_worker_state(\(worker), 'stopped', (\(unescaped: time)))").collect()
    return run
}

/// Minute-wide history partitions from three days on (the history the migration made is gone by then): returns the
/// first one's lower bound as an SQL timestamptz literal.
func minuteWidePartitions(_ database: Database) async throws -> String {
    let client = database.client
    _ = try await client.query("SELECT tock.set_history_retention('5 minutes')").collect()
    _ = try await client.query("SELECT tock.purge_history(now() + interval '3 days')").collect()
    let first = try #require(try await client.query("""
        SELECT min(lower)::text FROM tock.history_partitions WHERE NOT is_default
        """).decode(String.self).all().first)
    return "'\(first)'::timestamptz"
}

/// Two jobs' runs of every kind, as lag, queue_depth and the gauges report them: priority 10 has 3 ready and 1 delayed
/// (waiting out a backoff), priority 90 has 1 ready and 1 a worker holds.
func mixedQueue(_ database: Database) async throws {
    _ = try await database.createJob(json: #"{"name": "low", "script": "x.sh", "priority": 10}"#)
    _ = try await database.createJob(json: #"{"name": "high", "script": "x.sh", "priority": 90}"#)
    for _ in 0..<3 { _ = try await database.runNow("low") }
    let delayed = try await database.runNow("low")
    _ = try await database.client.fetch(
        "UPDATE tock.runs SET run_after = now() + interval '1 hour' WHERE id = \(delayed)", logger: database.logger)
    for _ in 0..<2 { _ = try await database.runNow("high") }
    let worker = try await database.registerWorker(host: "h", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
    #expect(try await database.claimRuns(worker: worker, max: 1).count == 1)
}

@Suite("operations in SQL: retention, stuck runs, reset, lag, gauges, preview")
struct OperationsTests {
    @Test("every function a role may call and every view says what it is (COMMENT ON: \\df+ and \\dv+ in psql)")
    func publicInterfaceIsDocumented() async throws {
        try await TestDatabase.withFresh { database, _ in
            let undocumented = try await database.client.query("""
                SELECT p.oid::regprocedure::text FROM pg_proc p
                WHERE p.pronamespace = 'tock'::regnamespace
                  AND p.proname IN (SELECT f.function_name FROM tock.role_functions() f)
                  AND obj_description(p.oid, 'pg_proc') IS NULL
                UNION ALL
                SELECT c.oid::regclass::text FROM pg_class c
                WHERE c.relnamespace = 'tock'::regnamespace AND c.relkind = 'v' AND obj_description(c.oid, 'pg_class') IS NULL
                ORDER BY 1
                """).decode(String.self).all()
            #expect(undocumented.isEmpty, "no COMMENT ON: \(undocumented)")
        }
    }

    @Test("retention hides runs past it at once and drops their partition whole once all of it is past; partitions are made ahead")
    func retention() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "old", script: "x.sh"))
            let client = database.client
            func ids(_ sql: String) async throws -> [Int64] {
                try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int64.self).all()
            }
            var ancient: [Int64] = []
            for _ in 0..<5 { ancient.append(try await finishedRun(database, job: "old", at: "now() - interval '40 days'")) }
            let recent = try await finishedRun(database, job: "old", at: "now() - interval '2 days'")
            let pending = try await database.runNow("old")

            // Past the 30 days' retention: not shown, though still stored (their partition holds newer runs).
            #expect(try await ids("SELECT id FROM tock.run_history ORDER BY id") == [recent, pending])
            #expect(try await ids("SELECT run_id FROM tock.run_logs ORDER BY run_id") == [recent])
            #expect(try await ids("SELECT count(*) FROM tock.finished_runs") == [6])
            #expect(try await database.job("old").lastRunId == pending)

            // Maintenance now: partitions ahead, none dropped.
            #expect(try await database.purgeHistory() == 0)
            let ahead = try await ids("""
                SELECT count(*) FROM tock.history_partitions WHERE NOT is_default AND lower >= now() AND lower < now() + interval '2 days'
                """)
            #expect(ahead.first ?? 0 >= 1, "partitions ahead of now")
            #expect(try await database.purgeHistory() == 0)

            // 33 days on, every run in the partition the history started with is past the retention: it goes whole.
            // The stopped workers go with it; the run in flight stays.
            #expect(try await ids("SELECT tock.purge_history(now() + interval '33 days')") == [6])
            #expect(try await ids("SELECT count(*) FROM tock.finished_runs") == [0])
            #expect(try await ids("SELECT count(*) FROM tock.history_partitions WHERE upper <= now() + interval '3 days'") == [0])
            #expect(try await ids("SELECT id FROM tock.runs") == [pending])
            #expect(try await ids("SELECT count(*) FROM tock.workers") == [0])

            // A finish no partition covers lands in the default partition, and moves into the partition made for
            // its time later. (Priority 90: its run is claimed before the pending one.)
            var future = JobDefinition(name: "future", script: "x.sh")
            future.priority = 90
            _ = try await database.createJob(future)
            let ahead60 = try await finishedRun(database, job: "future", at: "now() + interval '60 days'")
            #expect(try await ids("SELECT id FROM tock.finished_runs_default") == [ahead60])
            #expect(try await ids("SELECT tock.purge_history(now() + interval '60 days')") == [0])
            #expect(try await ids("SELECT id FROM tock.finished_runs_default") == [])
            #expect(try await ids("SELECT id FROM tock.finished_runs") == [ahead60])

            let refused = await #expect(throws: PSQLError.self) {
                _ = try await client.query("SELECT tock.set_history_retention('30 seconds')").collect()
            }
            #expect(refused?.serverInfo?[.message] == "retention: 00:00:30 is shorter than a minute")
        }
    }

    @Test("a retention shorter than the partitions holds: runs past it leave every view at once; partitions narrow to match")
    func retentionShorterThanAPartition() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "flaky", script: "x.sh"))
            let client = database.client
            let old = try await finishedRun(database, job: "flaky", at: "now() - interval '3 hours'", status: "failed")
            let young = try await finishedRun(database, job: "flaky", at: "now() - interval '1 hour'", status: "failed")
            func count(_ sql: String) async throws -> Int {
                try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self).all().first ?? -1
            }
            #expect(try await count("SELECT count(*)::int FROM tock.run_history") == 2)
            _ = try await client.query("SELECT tock.set_history_retention('2 hours')").collect()
            #expect(try await count("SELECT extract(epoch FROM history_partition)::int FROM tock.config") == 60)
            #expect(try await client.query("SELECT id FROM tock.run_history").decode(Int64.self).all() == [young])
            #expect(try await count("SELECT runs::int FROM tock.job_stats WHERE period = '24h'") == 1)
            #expect(try await count("SELECT (tock.stats() -> 'runs_24h' ->> 'failed')::int") == 1)
            #expect(try await count("SELECT count(*)::int FROM tock.run_logs WHERE run_id = \(old)") == 0)
            // A retry of the hidden run is still possible from SQL while it is stored: it is refused only once gone.
            #expect(try await count("SELECT count(*)::int FROM tock.finished_runs WHERE id = \(old)") == 1)
            // New partitions are a minute wide, from where the ones made before end (two days ahead).
            _ = try await client.query("SELECT tock.purge_history(now() + interval '3 days')").collect()
            #expect(try await count("""
                SELECT count(*)::int FROM tock.history_partitions WHERE upper - lower = interval '1 minute'
                """) >= 5)
        }
    }

    @Test("a reader holding the history back delays a partition's drop to the next maintenance, but not past two partitions")
    func dropWaitsLongerWhenOverdue() async throws {
        try await TestDatabase.withFresh { database, _ in
            let client = database.client
            func count(_ sql: String) async throws -> Int {
                try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self).all().first ?? -1
            }
            let start = try await minuteWidePartitions(database)
            #expect(try await count("SELECT count(*)::int FROM tock.history_partitions WHERE NOT is_default AND upper - lower <> interval '1 minute'") == 0)
            func partitions(endingBy minutes: Int) async throws -> Int {
                try await count("SELECT count(*)::int FROM tock.history_partitions WHERE NOT is_default AND upper <= \(start) + interval '\(minutes) minutes'")
            }
            #expect(try await partitions(endingBy: 3) == 3)

            // A reader of the history (a transaction that has read it) that lets go a second after the maintenance
            // begins. With one partition past the horizon the drop waits 200 ms for the lock, gives up before the
            // reader lets go, and leaves the partition to the next call.
            func purgeBesideReader(minutesPast: Int) async throws -> (Int, Duration) {
                try await client.withConnection { reader in
                    _ = try await reader.query("BEGIN", logger: database.logger)
                    _ = try await reader.query("SELECT count(*) FROM tock.finished_runs", logger: database.logger)
                    return try await withThrowingTaskGroup(of: Void.self) { group in
                        let clock = ContinuousClock()
                        let began = clock.now
                        group.addTask {
                            try await Task.sleep(until: began + .seconds(1), clock: clock)
                            _ = try await reader.query("COMMIT", logger: database.logger)
                        }
                        _ = try await client.query(PostgresQuery(unsafeSQL: """
                            SELECT tock.purge_history(\(start) + interval '5 minutes' + interval '\(minutesPast) minutes' + interval '1 second')
                            """)).collect()
                        let took = clock.now - began
                        try await group.waitForAll()
                        return (try await partitions(endingBy: 3), took)
                    }
                }
            }
            let (kept, waited) = try await purgeBesideReader(minutesPast: 1)
            #expect(kept == 3, "gave up before the reader let go a second in: nothing dropped (took \(waited))")
            // Three partitions past the horizon: the history holds two more than it should, so the drop waits out
            // the reader (up to 2 s) and the three go.
            let (left, waitedLonger) = try await purgeBesideReader(minutesPast: 3)
            #expect(left == 0, "three partitions past the horizon, \(left) left")
            #expect(waitedLonger >= .milliseconds(300), "waited for the reader: \(waitedLonger)")
        }
    }

    @Test("the maintenance waits for the history holding none of it: no deadlock with a reader; a run-now locks none of it")
    func dropLocksInReadersOrder() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "now", script: "x.sh"))
            let client = database.client
            let start = try await minuteWidePartitions(database)
            func partitionsLeft() async throws -> Int {
                try await client.query(PostgresQuery(unsafeSQL: """
                    SELECT count(*)::int FROM tock.history_partitions WHERE NOT is_default AND upper <= \(start) + interval '3 minutes'
                    """)).decode(Int.self).all().first ?? -1
            }
            #expect(try await partitionsLeft() == 3)
            // A run-now locks nothing of the history (its audit entry named the job by a lookup that, planned, locked
            // the history and every partition): it neither waits behind a drop nor deadlocks with one.
            try await client.withConnection { caller in
                _ = try await caller.query("BEGIN", logger: database.logger)
                _ = try await caller.query("SELECT tock.run_now('now')", logger: database.logger)
                let held = try await caller.query(PostgresQuery(unsafeSQL: """
                    SELECT count(*)::int FROM pg_locks l
                    WHERE l.pid = pg_backend_pid()
                      AND (l.relation = 'tock.finished_runs'::regclass
                           OR l.relation IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'tock.finished_runs'::regclass))
                    """), logger: database.logger).decode(Int.self).all().first
                _ = try await caller.query("COMMIT", logger: database.logger)
                #expect(held == 0, "a run-now held \(held ?? -1) locks of the history and its partitions")
            }
            // A reader that has locked the history (the table alone, as a statement does before its partitions) when
            // a maintenance that must drop three partitions (so it waits up to 2 s) starts.
            try await client.withConnection { reader in
                _ = try await reader.query("BEGIN", logger: database.logger)
                _ = try await reader.query("LOCK TABLE ONLY tock.finished_runs IN ACCESS SHARE MODE", logger: database.logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        _ = try await client.query(PostgresQuery(unsafeSQL: """
                            SELECT tock.purge_history(\(start) + interval '8 minutes' + interval '1 second')
                            """)).collect()
                    }
                    // The maintenance is waiting for the history (in this test's database: the others share its
                    // table's oid, cloned from one template).
                    var waiting = false
                    for _ in 0..<1500 where !waiting {
                        try await Task.sleep(for: .milliseconds(20))
                        waiting = try await client.query("""
                            SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'tock.finished_runs'::regclass
                                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
                            """).decode(Bool.self).all().first ?? false
                    }
                    #expect(waiting, "the maintenance never waited for the history")
                    // The reader goes on to the partitions: with the maintenance holding one (the default, which
                    // an attach of a new partition done before the drops held) and waiting for the history, this
                    // deadlocked, and one of the two failed.
                    _ = try await reader.query("SELECT count(*) FROM tock.finished_runs", logger: database.logger)
                    _ = try await reader.query("COMMIT", logger: database.logger)
                    try await group.waitForAll()
                }
            }
            #expect(try await partitionsLeft() == 0, "the maintenance dropped the three once the reader let go")
        }
    }

    @Test("a wider partition width leaves no gap: the rest of a week that older partitions reach into gets one of its own")
    func widerPartitionsLeaveNoGap() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "later", script: "x.sh"))
            let client = database.client
            func count(_ sql: String) async throws -> Int {
                try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self).all().first ?? -1
            }
            // The 30 days' retention partitions by week; the first partition ends on a day's boundary two days ahead,
            // inside a week (on six days of seven).
            #expect(try await count("SELECT extract(epoch FROM history_partition)::int FROM tock.config") == 7 * 86400)
            _ = try await client.query("SELECT tock.purge_history()").collect()
            #expect(try await count("""
                SELECT count(*)::int FROM (SELECT lower, lag(upper) OVER (ORDER BY upper) AS previous_upper
                                           FROM tock.history_partitions WHERE NOT is_default) p
                WHERE p.previous_upper IS NOT NULL AND p.lower <> p.previous_upper
                """) == 0)
            #expect(try await count("""
                SELECT count(*)::int FROM tock.history_partitions WHERE NOT is_default AND upper >= now() + interval '14 days'
                """) == 1)
            // A run that ends past the first partition lands in a partition made for it, not in the default one.
            _ = try await finishedRun(database, job: "later", at: "now() + interval '3 days'")
            #expect(try await count("SELECT count(*)::int FROM tock.finished_runs_default") == 0)
        }
    }

    @Test("a shorter retention on a database with no history partitions from now, and they roll over as runs finish")
    func shorterRetentionPartitionsFromNow() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "tick", script: "x.sh"))
            let client = database.client
            func count(_ sql: String) async throws -> Int {
                try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self).all().first ?? -1
            }
            // The migration's first partition reaches two days ahead; with nothing in it, it is made again.
            #expect(try await count("SELECT count(*)::int FROM tock.history_partitions WHERE upper > now() + interval '1 day'") == 1)
            _ = try await client.query("SELECT tock.set_history_retention('5 minutes')").collect()
            #expect(try await count("SELECT count(*)::int FROM tock.history_partitions WHERE upper > now() + interval '1 hour'") == 0)
            #expect(try await count("""
                SELECT count(*)::int FROM tock.history_partitions
                WHERE NOT is_default AND upper - lower = interval '1 minute' AND upper > now()
                """) >= 5)
            // A run finishing now lands in a minute's partition, and that partition is dropped once past the horizon.
            let run = try await finishedRun(database, job: "tick", at: "now() - interval '1 second'")
            #expect(try await count("SELECT count(*)::int FROM tock.finished_runs_default") == 0)
            let partition = try #require(try await client.query(
                "SELECT tableoid::regclass::text FROM tock.finished_runs WHERE id = \(run)").decode(String.self).all().first)
            #expect(partition.hasPrefix("tock.finished_runs_2"), "\(partition)")
            #expect(try await count("SELECT tock.purge_history(now() + interval '7 minutes')") == 1)
            #expect(try await count("SELECT count(*)::int FROM tock.history_partitions WHERE name = '\(partition.dropFirst(5))'") == 0)

            // A partition holding runs keeps its width: only empty ones are made again.
            _ = try await finishedRun(database, job: "tick", at: "now()")
            let before = try await count("SELECT count(*)::int FROM tock.history_partitions")
            _ = try await client.query("SELECT tock.set_history_retention('30 days')").collect()
            #expect(try await count("SELECT count(*)::int FROM tock.finished_runs") == 1)
            #expect(try await count("SELECT count(*)::int FROM tock.history_partitions") >= before)
        }
    }

    @Test("stuck_runs lists runs on a dead worker and past their timeout; reset_job ends them and restarts the schedule")
    func stuckAndReset() async throws {
        try await TestDatabase.withFresh { database, _ in
            let client = database.client
            _ = try await database.createJob(json: #"{"name": "hung", "script": "x.sh", "schedule": "every 1 hour", "timeout": "1m"}"#)
            _ = try await database.createJob(json: #"{"name": "fine", "script": "x.sh", "timeout": "1h"}"#)
            let worker = try await database.registerWorker(host: "h", pid: 1, concurrency: 5, scriptsDirectory: nil, version: nil)
            func runTenMinutesAgo(_ job: String) async throws -> Int64 {
                try #require(try await client.query(
                    "SELECT tock.run_now(\(job), 'sql', now() - interval '10 minutes')").decode(Int64.self).all().first)
            }
            let hung = try await runTenMinutesAgo("hung")
            let fine = try await runTenMinutesAgo("fine")
            _ = try await client.query("SELECT * FROM tock.claim_runs(\(worker), 5, now() - interval '10 minutes')").collect()
            #expect(try await database.stuckRuns().map(\.runId) == [hung])
            #expect(try await database.stuckRuns().first?.reason.contains("past its timeout") == true)

            // The worker goes silent: both of its runs are stuck now, for that reason.
            _ = try await client.query("UPDATE tock.workers SET last_heartbeat_at = now() - interval '1 minute'").collect()
            let stuck = try await database.stuckRuns()
            #expect(Set(stuck.map(\.runId)) == [hung, fine])
            #expect(stuck.first { $0.runId == fine }?.reason.contains("has not heartbeaten") == true)

            // A schedule left behind: next_run_at far in the past.
            _ = try await client.query("UPDATE tock.jobs SET next_run_at = now() - interval '3 days' WHERE name = 'hung'").collect()
            let reset = try await database.resetJob("hung")
            #expect(reset.runsEnded == [hung])
            let next = try #require(reset.nextRunAt)
            #expect(next > Date() && next <= Date().addingTimeInterval(3601))
            #expect(try await database.run(hung).status == "failed")
            #expect(try await database.run(hung).error?.hasPrefix("reset by tock.reset_job") == true)
            #expect(try await database.run(fine).status == "running")
            await #expect(throws: TockError.self) { _ = try await database.resetJob("nope") }
        }
    }

    @Test("lag groups the queue by priority; gauges report queue, workers, stuck and dead runs")
    func lagAndGauges() async throws {
        try await TestDatabase.withFresh { database, _ in
            try await mixedQueue(database)
            let lag = try await database.lag()
            #expect(lag.map(\.priority) == [90, 10])
            #expect(lag.map(\.waiting) == [1, 4])
            #expect(lag.map(\.ready) == [1, 3])
            #expect(lag.map(\.delayed) == [0, 1])

            // queue_depth totals lag, and the gauges read the same figures in one pass.
            let depth = try await database.queueDepth()
            #expect([depth.pending, depth.ready, depth.delayed, depth.running] == [5, 4, 1, 1])
            #expect(depth.oldestReadyAt == lag.compactMap(\.oldestReadyAt).min())
            #expect(depth.oldestReadyAgeSeconds > 0)

            let gauges = try await database.gauges()
            func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
                gauges.first { $0.name == name && $0.labels == labels }?.value
            }
            #expect(value("tock_queue_runs", ["state": "ready"]) == 4)
            #expect(value("tock_queue_runs", ["state": "delayed"]) == 1)
            #expect(value("tock_queue_runs", ["state": "running"]) == 1)
            #expect(value("tock_queue_waiting_runs", ["priority": "10"]) == 4)
            #expect(value("tock_queue_waiting_runs", ["priority": "90"]) == 1)
            #expect((value("tock_queue_oldest_ready_age_seconds") ?? 0) > 0)
            #expect(value("tock_workers_alive") == 1)
            #expect(value("tock_schedulers_alive") == 0)
            #expect(value("tock_dead_runs") == 0)
            #expect(value("tock_jobs", ["state": "enabled"]) == 2)
            // Per pool: every run here is in the default pool, which the one worker serves; a limit is a gauge too.
            #expect(value("tock_pool_ready_runs", ["pool": "default"]) == 4)
            #expect(value("tock_pool_running_runs", ["pool": "default"]) == 1)
            #expect(value("tock_pool_workers_alive", ["pool": "default"]) == 1)
            #expect(value("tock_pool_max_running", ["pool": "default"]) == nil)
            _ = try await database.setPool("etl", changes: ["max_running": .integer(3)])
            let withLimit = try await database.gauges()
            #expect(withLimit.first { $0.name == "tock_pool_max_running" && $0.labels == ["pool": "etl"] }?.value == 3)
            #expect(withLimit.first { $0.name == "tock_pool_workers_alive" && $0.labels == ["pool": "etl"] }?.value == 0)
            #expect(gauges.allSatisfy { !$0.help.isEmpty })
        }
    }

    @Test("queue_glance is queue_depth while the queue is short, and capped lower bounds beyond its limit; stats uses it")
    func queueGlance() async throws {
        try await TestDatabase.withFresh { database, _ in
            try await mixedQueue(database)
            let depth = try await database.queueDepth()
            #expect([depth.pending, depth.ready, depth.delayed, depth.running] == [5, 4, 1, 1])

            typealias Glance = (pending: Int, ready: Int, delayed: Int, running: Int, oldest: Date?, capped: Bool)
            func glance(_ limit: Int) async throws -> Glance {
                let row = try await database.client.fetch("""
                    SELECT pending::int, ready::int, delayed::int, running::int, oldest_ready_at, capped
                    FROM tock.queue_glance(\(limit)::int)
                    """, logger: database.logger)[0]
                let (pending, ready, delayed, running, oldest, capped) = try row.decode((Int, Int, Int, Int, Date?, Bool).self)
                return (pending, ready, delayed, running, oldest, capped)
            }
            // queue_depth reaches Swift as JSON text, a glance as binary: the same instant, give or take the rounding.
            func sameInstant(_ a: Date?, _ b: Date?) -> Bool {
                guard let a, let b else { return a == nil && b == nil }
                return abs(a.timeIntervalSince(b)) < 0.001
            }
            // Up to the limit (5 pending, limit 5 included): queue_depth's figures exactly.
            for limit in [5, 100] {
                let exact = try await glance(limit)
                #expect([exact.pending, exact.ready, exact.delayed, exact.running] as [Int] == [5, 4, 1, 1], "limit \(limit)")
                #expect(exact.oldest != nil && sameInstant(exact.oldest, depth.oldestReadyAt))
                #expect(!exact.capped)
            }
            // Beyond it: pending is the limit, ready and delayed are lower bounds that add up to it; running and
            // the oldest ready run stay exact.
            for limit in [1, 3, 4] {
                let capped = try await glance(limit)
                #expect(capped.capped && capped.pending == limit && capped.ready + capped.delayed == limit, "limit \(limit)")
                #expect(capped.ready <= depth.ready && capped.delayed <= depth.delayed, "limit \(limit)")
                #expect(capped.running == 1, "limit \(limit)")
                #expect(sameInstant(capped.oldest, depth.oldestReadyAt), "limit \(limit)")
            }
            let refused = await #expect(throws: PSQLError.self) {
                _ = try await database.client.fetch("SELECT * FROM tock.queue_glance(0)", logger: database.logger)
            }
            #expect(refused?.serverInfo?[.message] == "limit: 0 is not a positive number of runs")

            // The dashboard's figures: exact here, capped at 10,000 once more are pending, while /health's stay exact.
            func statsQueue() async throws -> [String: Any] {
                let json = try await database.stats()
                let stats = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
                return try #require(stats?["queue"] as? [String: Any])
            }
            let short = try await statsQueue()
            #expect(short["pending"] as? Int == 5 && short["ready"] as? Int == 4 && short["capped"] as? Bool == false)
            _ = try await database.client.fetch("""
                INSERT INTO tock.runs (job_id, trigger) SELECT j.id, 'sql' FROM tock.jobs j, generate_series(1, 10000) WHERE j.name = 'low'
                """, logger: database.logger)
            let deep = try await statsQueue()
            #expect(deep["pending"] as? Int == 10_000 && deep["capped"] as? Bool == true && deep["running"] as? Int == 1)
            #expect(try await database.queueDepth().pending == 10_005)
        }
    }

    @Test("schedule_preview gives a job's next fire times in its own zone")
    func schedulePreview() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(json: #"{"name": "hk", "script": "x.sh", "schedule": "daily at 06:00", "timezone": "Asia/Hong_Kong"}"#)
            let rows = try await database.client.query("""
                SELECT local_time, timezone FROM tock.schedule_preview('hk', 3, '2026-03-01 00:00:00+00')
                """).decode((String, String).self).all()
            // 00:00 UTC is 08:00 in Hong Kong: the first 06:00 there is the next day.
            #expect(rows.map(\.0) == ["2026-03-02 06:00:00 Mon", "2026-03-03 06:00:00 Tue", "2026-03-04 06:00:00 Wed"])
            #expect(rows.allSatisfy { $0.1 == "Asia/Hong_Kong" })
        }
    }
}

@Suite("batched finishes")
struct FinishBatchTests {
    @Test("finish_runs ends a mixed batch in one call: successes set-based, failures retried, foreign runs left alone")
    func mixedBatch() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(json: #"{"name": "b", "script": "x.sh", "max_attempts": 2}"#)
            for _ in 0..<4 { _ = try await database.runNow("b") }
            let worker = try await database.registerWorker(host: "h", pid: 1, concurrency: 4, scriptsDirectory: nil, version: nil)
            let other = try await database.registerWorker(host: "h", pid: 2, concurrency: 1, scriptsDirectory: nil, version: nil)
            let mine = try await database.claimRuns(worker: worker, max: 3).map(\.runId)
            let theirs = try await database.claimRuns(worker: other, max: 1).map(\.runId)
            let finished = try await database.finishRuns(worker: worker, [
                (mine[0], RunOutcome(status: .succeeded, exitCode: 0, output: "ok\n", outputBytes: 3)),
                (mine[1], RunOutcome(status: .failed, exitCode: 3, error: "exit 3", output: "bad\n", outputBytes: 4)),
                (mine[2], RunOutcome(status: .cancelled, error: "cancelled")),
                (theirs[0], RunOutcome(status: .succeeded, exitCode: 0)),
            ])
            #expect(finished == Set(mine))
            #expect(try await database.run(mine[0]).status == "succeeded")
            #expect(try await database.run(mine[0]).output == "ok\n")
            #expect(try await database.run(mine[1]).status == "failed")
            #expect(try await database.run(mine[1]).exitCode == 3)
            #expect(try await database.run(mine[1]).output == "bad\n")
            #expect(try await database.run(mine[2]).status == "cancelled")
            #expect(try await database.run(theirs[0]).status == "running")
            // The failure left a retry behind, linked to it.
            let retries = try await database.runs(job: "b", status: .pending)
            #expect(retries.count == 1 && retries.first?.attempt == 2)
            #expect(try await database.workers().first { $0.id == worker }?.runsProcessed == 3)
            // A second report of the same runs changes nothing.
            #expect(try await database.finishRuns(worker: worker, [(mine[0], RunOutcome(status: .failed))]).isEmpty)
        }
    }
}
