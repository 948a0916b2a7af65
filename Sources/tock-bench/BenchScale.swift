import Foundation
import Logging
import PostgresNIO
import TockCLI
import TockCore
import TockPostgres

extension BenchReport {
    /// One query of the scale scenario, timed `count` times.
    struct QueryTime: Encodable {
        var name: String
        /// What calls it: an API route (the portal's pages call these), the scheduler, a worker, or psql.
        var caller: String
        var portal: Bool
        var count: Int
        var p50Ms: Double
        var maxMs: Double
        var rows: Int
    }
    struct Scale: Encodable {
        var jobs: Int
        var runs: Int
        /// Pending runs added for the last queries (the worker's calls on a deep queue).
        var backlog: Int
        var seedSeconds: Double
        var databaseSize: String
        var queries: [QueryTime]
    }
}

extension BenchRun {
    /// `jobs` jobs and `runs` finished runs spread over the last 30 days (the default retention), then each
    /// query the scheduler, a worker and the portal's API routes issue, timed through the same `Database` methods
    /// production calls. Writes (tick, claim) work on fresh due jobs and pending runs each time. Last, `backlog`
    /// pending runs are added and the worker's calls timed again on that deep queue.
    func scale(jobs: Int, runs: Int, backlog: Int, repeats: Int) async throws -> BenchReport.Scale {
        let seedStart = monotonicNanos()
        try await seedScale(jobs: jobs, runs: runs)
        let seedSeconds = Double(monotonicNanos() - seedStart) / 1e9
        return try await withDatabase(settings, logger: logger) { database, client in
            func value<T: PostgresDecodable & Sendable>(_ type: T.Type, _ query: PostgresQuery) async throws -> T {
                guard let first = try await client.fetch(query, logger: logger).first?.decode(T.self) else {
                    throw TockError(.failed, "bench: no row from \(query.sql)")
                }
                return first
            }
            let size = try await value(String.self, "SELECT pg_size_pretty(pg_database_size(current_database()))")
            let worker = try await database.registerWorker(host: "bench", pid: Int(getpid()), concurrency: 100,
                                                           scriptsDirectory: nil, version: TockVersion.current)
            // A job in the middle of the name order, a run in the middle of the history, a job near the end.
            let job = try await value(String.self, "SELECT name FROM tock.jobs ORDER BY name OFFSET \(jobs / 2) LIMIT 1")
            let newest = try await value(Int64.self, "SELECT max(id) FROM tock.finished_runs")
            let middle = try await value(Int64.self, "SELECT id FROM tock.finished_runs WHERE id > \(newest / 2) ORDER BY id LIMIT 1")
            let lastPage = try await value(String.self, "SELECT name FROM tock.jobs ORDER BY name OFFSET \(max(jobs - 150, 0)) LIMIT 1")

            var times: [BenchReport.QueryTime] = []
            func time(_ name: String, _ caller: String, portal: Bool = true, before: (() async throws -> Void)? = nil,
                      _ body: () async throws -> Int) async throws {
                var samples: [Int64] = []
                var rows = 0
                for _ in 0..<repeats {
                    try await before?()
                    let start = monotonicNanos()
                    rows = try await body()
                    samples.append(monotonicNanos() - start)
                }
                let distribution = Distribution(nanoseconds: samples)
                times.append(BenchReport.QueryTime(name: name, caller: caller, portal: portal, count: repeats,
                                                   p50Ms: distribution.p50Ms, maxMs: distribution.maxMs, rows: rows))
            }

            // The scheduler and the workers.
            try await time("tock.tick(): nothing due", "scheduler", portal: false) { _ = try await database.tick(); return 1 }
            func makeHundredJobsDue() async throws {
                _ = try await client.fetch("""
                    UPDATE tock.jobs SET next_run_at = now() - interval '1 second'
                    WHERE id IN (SELECT id FROM tock.jobs WHERE enabled AND next_run_at IS NOT NULL ORDER BY random() LIMIT 100)
                    """, logger: self.logger)
            }
            func finishHundredRunning() async throws -> Int {
                let running = try await client.fetch(
                    "SELECT run_id FROM tock.run_leases WHERE worker_id = \(worker) LIMIT 100", logger: logger)
                    .map { try $0.decode(Int64.self) }
                return try await database.finishRuns(worker: worker, running.map { ($0, RunOutcome(status: .succeeded, exitCode: 0)) }).count
            }
            try await time("tock.tick(): 100 jobs due", "scheduler", portal: false, before: makeHundredJobsDue) {
                _ = try await database.tick()
                return 100
            }
            try await time("tock.claim_runs(worker, 100)", "worker", portal: false, before: {
                _ = try await client.fetch("""
                    INSERT INTO tock.runs (job_id, trigger) SELECT id, 'sql' FROM tock.jobs ORDER BY random() LIMIT 100
                    """, logger: self.logger)
            }) { try await database.claimRuns(worker: worker, max: 100).count }
            try await time("tock.finish_runs(worker, 100 runs)", "worker", portal: false, finishHundredRunning)
            try await time("tock.run_now(job)", "POST /jobs/{job}/trigger") { _ = try await database.runNow(job, trigger: "api"); return 1 }
            try await time("tock.purge_history(): maintenance", "scheduler", portal: false) {
                try await database.purgeHistory()
            }

            // What operators read, timed here and again on the deep queue below.
            func firstJobsPage() async throws -> Int { try await database.jobs(limit: 100).count }
            func dashboardStats() async throws -> Int {
                _ = try await database.stats()
                return 1
            }
            func workerList() async throws -> Int { try await database.workers().count }
            func health() async throws -> Int {
                _ = try await database.queueDepth()
                _ = try await database.schedulersAlive()
                return 1
            }
            func gauges() async throws -> Int { try await database.gauges().count }

            // The portal's pages, through the routes they call.
            try await time("job_overview: first page of 100", "GET /jobs?limit=100", firstJobsPage)
            try await time("job_overview: a page deep in the list", "GET /jobs?after=…&limit=100") {
                try await database.jobs(after: lastPage, limit: 100).count
            }
            try await time("job_overview: name search", "GET /jobs?q=…") {
                try await database.jobs(search: String(job.suffix(4)), limit: 100).count
            }
            try await time("tock.stats()", "GET /stats", dashboardStats)
            try await time("job_overview: one job", "GET /jobs/{job}") { _ = try await database.job(job); return 1 }
            try await time("run_history: a job's newest 25", "GET /jobs/{job}/runs") { try await database.runs(job: job, limit: 25).count }
            try await time("job_stats: one job", "GET /jobs/{job}/stats") { try await database.jobStats(job).count }
            try await time("run_history: newest 50", "GET /runs") { try await database.runs(limit: 50).count }
            try await time("run_history: failed, newest 50", "GET /runs?status=failed") {
                try await database.runs(status: .failed, limit: 50).count
            }
            try await time("run_history: a page in the middle", "GET /runs?before=…") {
                try await database.runs(before: middle, limit: 50).count
            }
            try await time("run_history: dead letters", "GET /dead-letter") { try await database.runs(status: .dead, limit: 50).count }
            try await time("run_history + run_logs: one run", "GET /runs/{id}") { _ = try await database.run(middle); return 1 }
            // The operator's pages (issue #27): the failures of the last 7 days (tens of thousands of runs here), the
            // newest and a page 10,000 deep, one job's, their count, failures by job, the day's chart, the audit log.
            let failures = #"{"status": "failed,timed_out,dead", "since": "7d"}"#
            // (At toy sizes there may be fewer: then the top of the list.)
            let deepFailure = try await value(Int64.self, """
                SELECT coalesce((SELECT id FROM tock.finished_runs
                                 WHERE status IN ('failed', 'timed_out', 'dead') AND finished_at >= now() - interval '7 days'
                                 ORDER BY id DESC OFFSET 10000 LIMIT 1), 9223372036854775807)
                """)
            try await time("find_runs: failures of 7 d, newest 50", "GET /runs?status=failed,timed_out,dead&since=7d") {
                try await database.findRuns(filter: failures, limit: 50).count
            }
            try await time("find_runs: failures of 7 d, a page 10,000 deep", "GET /runs?…&before=…") {
                try await database.findRuns(filter: failures, before: deepFailure, limit: 50).count
            }
            try await time("find_runs: one job's failures", "GET /runs?job=…&status=failed") {
                try await database.findRuns(filter: #"{"job": "\#(job)", "status": "failed"}"#, limit: 50).count
            }
            // The worst case: a filter that matches nothing. No index serves trigger, so the search is bounded (the
            // API's 40,000 runs of each half), and so is the count the runs page shows beside it.
            let noRetries = #"{"trigger": "retry", "since": "7d"}"#
            try await time("find_runs_page: retries of 7 d (none: a bounded search)", "GET /runs?trigger=retry&since=7d") {
                try await database.findRunsPage(filter: noRetries, limit: 50, scan: 40_000).runs.count
            }
            try await time("count_runs: retries of 7 d (none: a bounded search)", "GET /runs/count?trigger=retry&since=7d") {
                try await database.countRuns(filter: noRetries, scan: 40_000).count
            }
            try await time("count_runs: failures of 7 d (capped at 10,000)", "GET /runs/count") {
                try await database.countRuns(filter: failures).count
            }
            try await time("failure_groups: 1 h", "GET /failures?since=1h") { try await database.failureGroups(since: "1h").count }
            try await time("failure_groups: 24 h", "GET /failures?since=24h") { try await database.failureGroups(since: "24h").count }
            try await time("activity: 24 h in 96 buckets", "GET /activity") {
                try await database.activity(hours: 24, bucketMinutes: 15).count
            }
            try await time("audit_page: newest 50", "GET /audit") { try await database.audit(limit: 50).count }
            try await time("worker_overview", "GET /workers", workerList)
            try await time("queue_depth + workers", "GET /health", health)
            // Prometheus scrapes it (every 15-60 s); the portal does not.
            try await time("tock.gauges()", "GET /metrics", portal: false, gauges)
            // psql and `tock` commands, not the portal.
            try await time("tock.lag", "tock queue", portal: false) { try await database.lag().count }
            try await time("tock.stuck_runs", "tock runs --stuck", portal: false) { try await database.stuckRuns().count }

            // A deep queue: half the backlog ready, half waiting out an hour (as retries in backoff do), statistics
            // taken. With 200,000 runs pending, PostgreSQL compiled the claim's plan with LLVM on every call (JIT:
            // 51 ms of a 53 ms claim of 100) and next_delayed_run read every pending run (62 ms); with 300,000 on this
            // history, the claim's generic plan sorted every ready run (340 ms). All are timed here.
            if backlog > 0 {
                _ = try await client.fetch("""
                    INSERT INTO tock.runs (job_id, trigger, run_after)
                    SELECT (ARRAY(SELECT id FROM tock.jobs ORDER BY id LIMIT 1000))[1 + i % 1000], 'sql',
                           CASE WHEN i % 2 = 0 THEN now() ELSE now() + interval '1 hour' END
                    FROM generate_series(1, \(backlog)) i
                    """, logger: logger)
                _ = try await client.fetch("ANALYZE tock.runs", logger: logger)
                try await time("tock.claim_runs(worker, 100): \(backlog) pending", "worker", portal: false) {
                    try await database.claimRuns(worker: worker, max: 100).count
                }
                try await time("tock.finish_runs(worker, 100 runs): \(backlog) pending", "worker", portal: false,
                               finishHundredRunning)
                try await time("tock.tick(): 100 jobs due, \(backlog) pending", "scheduler", portal: false,
                               before: makeHundredJobsDue) {
                    _ = try await database.tick()
                    return 100
                }
                try await time("tock.next_delayed_run(): \(backlog) pending", "worker", portal: false) {
                    _ = try await database.nextDelayedRun()
                    return 1
                }
                // What operators look at during a backlog: the dashboard's queries, and every scrape of /metrics and
                // health check, which count the queue.
                try await time("job_overview: first page of 100, \(backlog) pending", "GET /jobs?limit=100", firstJobsPage)
                try await time("tock.stats(): \(backlog) pending", "GET /stats", dashboardStats)
                try await time("worker_overview: \(backlog) pending", "GET /workers", workerList)
                try await time("tock.gauges(): \(backlog) pending", "GET /metrics", portal: false, gauges)
                try await time("queue_depth + workers: \(backlog) pending", "GET /health", portal: false, health)
            }
            return BenchReport.Scale(jobs: jobs, runs: runs, backlog: backlog, seedSeconds: seedSeconds, databaseSize: size,
                                     queries: times)
        }
    }

    /// The history: jobs of four schedule kinds; per job, runs at evenly spaced fire times over 30 days, about
    /// 5% failed and 0.2% dead, in partitions of the default width (a week for 30 days' retention); output stored
    /// for each job's newest run. Four template jobs go through the jobs trigger (parse, describe, next fire time);
    /// the rest copy their computed columns with the tables' own triggers off while seeding (the benchmark's role
    /// owns its database), which takes seconds instead of minutes. That includes the check that each run's job
    /// exists (a trigger since migration 0010): the seed names only the jobs it made.
    func seedScale(jobs: Int, runs: Int) async throws {
        let perJob = max(runs / max(jobs, 1), 1)
        try await sql("TRUNCATE tock.runs, tock.run_leases, tock.run_output, tock.finished_runs")
        try await sql("DELETE FROM tock.jobs WHERE name NOT IN ('clock', 'true', 'noop')")
        try await sql("""
            INSERT INTO tock.jobs (name, script, schedule, timezone)
            SELECT 'job-' || lpad(i::text, 7, '0'), 'report.sh',
                   (ARRAY['every 5m', 'daily at 06:00', '*/15 * * * *', 'manual'])[1 + i % 4],
                   (ARRAY['UTC', 'Asia/Hong_Kong', 'Europe/London', 'America/New_York'])[1 + i % 4]
            FROM generate_series(1, 4) i
            """)
        // The layout of a Tock that has run for a month: partitions of the history's days, none from before.
        try await sql("""
            DO $$
            DECLARE p record;
            BEGIN
                FOR p IN SELECT name FROM tock.history_partitions WHERE NOT is_default LOOP
                    EXECUTE format('DROP TABLE tock.%I', p.name);
                END LOOP;
            END $$
            """)
        try await sql("SELECT tock.add_history_partitions(now() - interval '31 days', now() + interval '2 days')")
        try await sql("ALTER TABLE tock.jobs DISABLE TRIGGER USER")
        // Nothing comes due while the history is written and timed: a day later than the schedules say.
        try await sql("UPDATE tock.jobs SET next_run_at = next_run_at + interval '1 day' WHERE name LIKE 'job-%'")
        do {
            try await seedHistory(jobs: jobs, perJob: perJob)
        } catch {
            try? await sql("ALTER TABLE tock.jobs ENABLE TRIGGER USER")
            throw error
        }
        try await sql("ALTER TABLE tock.jobs ENABLE TRIGGER USER")
        try await sql("VACUUM ANALYZE tock.jobs")
        try await sql("VACUUM ANALYZE tock.finished_runs")
    }

    private func seedHistory(jobs: Int, perJob: Int) async throws {
        try await sql("""
            INSERT INTO tock.jobs (name, script, schedule, timezone, schedule_description, spec, next_run_at, anchor_at)
            SELECT 'job-' || lpad(i::text, 7, '0'), 'report.sh', t.schedule, t.timezone, t.schedule_description, t.spec,
                   t.next_run_at, t.anchor_at
            FROM generate_series(5, \(jobs)) i
            JOIN tock.jobs t ON t.name = 'job-' || lpad((1 + (i - 1) % 4)::text, 7, '0')
            """)
        try await sql("""
            INSERT INTO tock.workers (name, host, pid, concurrency, state, started_at, last_heartbeat_at, stopped_at)
            VALUES ('history:1', 'history', 1, 4, 'stopped', now() - interval '31 days', now() - interval '1 minute', now() - interval '1 minute')
            """)
        // Oldest first, one fire time of every job per statement: ids and finish times grow together, as they do
        // in a real history, so an index on finished_at fills in order.
        for k in stride(from: perJob, through: 1, by: -1) {
            try await sql("""
                INSERT INTO tock.finished_runs (id, job_id, trigger, status, priority, attempt, scheduled_for, enqueued_at,
                                                run_after, started_at, finished_at, worker_id, exit_code, error, output,
                                                output_bytes)
                SELECT nextval(pg_get_serial_sequence('tock.runs', 'id')), j.id, 'schedule', s.status, 50, 1, t.fire,
                       t.fire, t.fire, t.fire + interval '2 ms',
                       t.fire + interval '2 ms' + (j.id % 997) * interval '1 ms' * \(k),
                       w.id, CASE WHEN s.status = 'succeeded' THEN 0 ELSE 1 END,
                       CASE WHEN s.status <> 'succeeded' THEN 'exited with status 1' END,
                       \(unescaped: k == 1 ? "'report written: 1,024 rows', 26" : "NULL, 0")
                FROM tock.jobs j
                CROSS JOIN (SELECT id FROM tock.workers WHERE name = 'history:1') w
                CROSS JOIN LATERAL (SELECT date_trunc('second', now()) - interval '30 days' * \(k) / \(perJob)
                                           + (j.id % 600) * interval '1 second' AS fire) t
                CROSS JOIN LATERAL (SELECT CASE WHEN (j.id * 31 + \(k) * 17) % 500 = 0 THEN 'dead'
                                                WHEN (j.id * 7 + \(k) * 13) % 20 = 0 THEN 'failed'
                                                ELSE 'succeeded' END AS status) s
                ORDER BY t.fire
                """)
        }
    }
}
