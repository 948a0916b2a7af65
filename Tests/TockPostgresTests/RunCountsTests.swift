import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// The runs that ended per minute and status as tock.run_counts holds them, against a count of the history itself:
/// every minute and status where the two differ, as text ("minute status counted stored"). Empty when they agree.
private func countsThatDiffer(_ client: PostgresClient) async throws -> [String] {
    try await client.query("""
        WITH counted AS (SELECT minute, status, sum(runs) AS n FROM tock.run_counts GROUP BY 1, 2 HAVING sum(runs) <> 0),
             stored AS (SELECT tock.minute_of(finished_at) AS minute, status, count(*) AS n FROM tock.finished_runs GROUP BY 1, 2)
        SELECT concat_ws(' ', coalesce(c.minute, s.minute), coalesce(c.status, s.status), c.n, s.n)
        FROM counted c FULL JOIN stored s ON s.minute = c.minute AND s.status = c.status
        WHERE c.n IS DISTINCT FROM s.n
        ORDER BY 1
        """).decode(String.self).all()
}

@Suite("run counts: what tock.stats and tock.activity read instead of the history")
struct RunCountsTests {
    @Test("counts equal the history however runs end or leave it: finishes at once from two workers, cancels, deletes, maintenance, TRUNCATE")
    func countsFollowTheHistory() async throws {
        try await TestDatabase.withFresh { database, _ in
            let client = database.client
            _ = try await database.createJob(JobDefinition(name: "a", script: "x.sh"))
            _ = try await database.createJob(JobDefinition(name: "b", script: "x.sh"))
            // Runs that ended at times of their own: two hours ago, a day and a half ago, now.
            for (job, time, status) in [("a", "now() - interval '2 hours'", "failed"), ("a", "now() - interval '36 hours'", "succeeded"),
                                        ("b", "now() - interval '90 seconds'", "timed_out"), ("b", "now()", "cancelled")] {
                _ = try await finishedRun(database, job: job, at: time, status: status)
            }
            // Two workers finish 100 runs each at the same moment, each in batches: their connections count into rows
            // of their own, and neither waits for the other's.
            for _ in 0..<100 { _ = try await database.runNow("a"); _ = try await database.runNow("b") }
            let workers = [try await database.registerWorker(host: "h", pid: 1, concurrency: 100, scriptsDirectory: nil, version: nil),
                           try await database.registerWorker(host: "h", pid: 2, concurrency: 100, scriptsDirectory: nil, version: nil)]
            let claimed = [try await database.claimRuns(worker: workers[0], max: 100), try await database.claimRuns(worker: workers[1], max: 100)]
            #expect(claimed.map(\.count) == [100, 100])
            try await withThrowingTaskGroup(of: Int.self) { group in
                for (worker, runs) in zip(workers, claimed) {
                    group.addTask {
                        var finished = 0
                        for batch in stride(from: 0, to: runs.count, by: 10) {
                            let outcomes = runs[batch..<batch + 10].map {
                                (run: $0.runId, outcome: RunOutcome(status: $0.runId % 3 == 0 ? .failed : .succeeded, exitCode: 0))
                            }
                            finished += try await database.finishRuns(worker: worker, outcomes).count
                        }
                        return finished
                    }
                }
                var finished = 0
                for try await count in group { finished += count }
                #expect(finished == 200)
            }
            #expect(try await countsThatDiffer(client) == [])
            // A pending run cancelled, runs deleted in bulk: counted out as they leave.
            let pending = try await database.runNow("a")
            #expect(try await database.cancel(pending) == "cancelled")
            let deleted = try await database.bulkRuns("delete", ids: nil, filter: #"{"status": "failed"}"#)
            #expect(deleted.done > 30)
            #expect(try await countsThatDiffer(client) == [])

            // Maintenance merges the processes' rows of closed minutes into one per minute and status; the sums stay.
            _ = try await client.query("SELECT tock.purge_history(now() + interval '5 minutes')").collect()
            #expect(try await client.query("SELECT count(*)::int FROM tock.run_counts WHERE backend <> 0").decode(Int.self).all() == [0])
            #expect(try await countsThatDiffer(client) == [])

            // tock.stats' 24 hours and tock.ended_counts' spans, whole minutes or not, against counting the runs.
            let stats = try await client.query("""
                SELECT (tock.stats() -> 'runs_24h') - 'pending' - 'running' = (
                    SELECT jsonb_object_agg(s, (SELECT count(*) FROM tock.finished_runs r
                                                WHERE r.status = s AND r.finished_at > now() - interval '24 hours'))
                    FROM unnest(ARRAY['succeeded', 'failed', 'timed_out', 'cancelled', 'dead']) s)
                """).decode(Bool.self).all()
            #expect(stats == [true])
            let spans = try await client.query("""
                SELECT count(*)::int FROM (VALUES
                    (now() - interval '3 days', 'infinity'::timestamptz), (now() - interval '125 seconds', now() - interval '30 seconds'),
                    (now() - interval '37 hours', now() - interval '1 hour'), (tock.minute_of(now()) - interval '1 hour', tock.minute_of(now())),
                    (now() - interval '2 hours 10 seconds', now() - interval '2 hours'), (now(), now())) t(a, b)
                WHERE (SELECT coalesce(sum(e.runs), 0) FROM tock.ended_counts(t.a, t.b) e)
                      = (SELECT count(*) FROM tock.finished_runs r WHERE r.finished_at >= t.a AND r.finished_at < t.b)
                """).decode(Int.self).all()
            #expect(spans == [6])

            // A job's deletion takes its runs' counts with it; TRUNCATE takes them all.
            _ = try await database.deleteJob("b")
            #expect(try await countsThatDiffer(client) == [])
            _ = try await client.query("TRUNCATE tock.finished_runs").collect()
            #expect(try await client.query("SELECT count(*)::int FROM tock.run_counts").decode(Int.self).all() == [0])
        }
    }

    @Test("minutes past the retention are forgotten; what a trigger cannot see, tock.recount_runs counts again")
    func retentionAndRecount() async throws {
        try await TestDatabase.withFresh { database, _ in
            let client = database.client
            _ = try await database.createJob(JobDefinition(name: "a", script: "x.sh"))
            _ = try await finishedRun(database, job: "a", at: "now() - interval '3 hours'")
            _ = try await finishedRun(database, job: "a", at: "now() - interval '10 minutes'")
            let succeeded24h = "SELECT (tock.stats() -> 'runs_24h' ->> 'succeeded')::int"
            _ = try await client.query("SELECT tock.set_history_retention('2 hours')").collect()
            _ = try await client.query("SELECT tock.purge_history()").collect()
            #expect(try await client.query(PostgresQuery(unsafeSQL: succeeded24h)).decode(Int.self).all() == [1])
            // The old run's partition holds a newer run, so it stays, and so does its count: a longer retention set
            // again shows it, counted.
            _ = try await client.query("SELECT tock.set_history_retention('30 days')").collect()
            #expect(try await client.query(PostgresQuery(unsafeSQL: succeeded24h)).decode(Int.self).all() == [2])
            #expect(try await countsThatDiffer(client) == [])
            // Once no stored run is that old, its minutes are forgotten.
            _ = try await client.query("SELECT tock.purge_history(now() + interval '60 days')").collect()
            #expect(try await client.query("SELECT count(*)::int FROM tock.run_counts").decode(Int.self).all() == [0])
            _ = try await finishedRun(database, job: "a", at: "now() - interval '10 minutes'")
            // An UPDATE of a finish time is not counted by the triggers (nothing in Tock makes one); a recount is exact.
            _ = try await client.query("UPDATE tock.finished_runs SET finished_at = now() - interval '1 hour'").collect()
            #expect(try await client.query("SELECT tock.recount_runs()::int").decode(Int.self).all() == [1])
            #expect(try await countsThatDiffer(client) == [])
        }
    }

    @Test("bad spans are refused, naming the field: an unbounded start, buckets that are not whole minutes")
    func badSpansRefused() async throws {
        try await TestDatabase.withFresh { database, _ in
            for (sql, message) in [
                ("SELECT * FROM tock.ended_counts('-infinity')", "from: a finite time to count from"),
                ("SELECT * FROM tock.ended_counts(NULL, now())", "from: a finite time to count from"),
                ("SELECT * FROM tock.activity('1 hour', '90 seconds')", "span: a span of 1 hour to 31 days, in at most 2,000 buckets of whole minutes"),
                ("SELECT * FROM tock.activity('61 minutes 30 seconds', '1 minute')", "span: a span of 1 hour"),
            ] {
                let error = await #expect(throws: PSQLError.self) { _ = try await database.client.query(PostgresQuery(unsafeSQL: sql)).collect() }
                #expect(error?.serverInfo?[.sqlState] == "22023", "\(sql)")
                #expect(error?.serverInfo?[.message]?.hasPrefix(message) == true, "\(sql): \(String(describing: error?.serverInfo?[.message]))")
            }
            // No time is no span: failures since NULL are none, not every failure kept.
            _ = try await database.createJob(JobDefinition(name: "a", script: "x.sh"))
            _ = try await finishedRun(database, job: "a", at: "now() - interval '1 hour'", status: "failed")
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.failure_groups('24h')").decode(Int.self).all() == [1])
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.failure_groups(NULL)").decode(Int.self).all() == [0])
        }
    }
}
