import Foundation
import PostgresNIO
import Synchronization
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("jobs, tick, claim and finish in SQL")
struct QueueTests {
    @Test("4 concurrent schedulers over 200 due jobs offer each fire time once: exactly 200 runs, no repeat dropped by the index")
    func tickExactlyOnce() async throws {
        try await TestDatabase.withFresh(maximumConnections: 8) { database, _ in
            try await EnqueueProbe.install(database.client)
            _ = try await database.client.query("""
                INSERT INTO tock.jobs (name, script, schedule) SELECT 'job' || i, 'x.sh', 'every 1h' FROM generate_series(1, 200) i
                """).collect()
            // All due a minute ago.
            _ = try await database.client.query("UPDATE tock.jobs SET next_run_at = now() - interval '1 minute'").collect()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        // As a scheduler does: tick until nothing is due (rows another holds are skipped, not waited for).
                        while let next = try await database.tick(limit: 30), next <= Date() {}
                    }
                }
                try await group.waitForAll()
            }
            let (runs, jobs) = try #require(try await database.client.query(
                "SELECT count(*), count(DISTINCT job_id) FROM tock.runs WHERE trigger = 'schedule'")
                .decode((Int, Int).self).all().first)
            #expect(runs == 200)
            #expect(jobs == 200)
            // The unique index on (job, fire time) would hide a fire time two ticks both enqueued: the probe counts
            // what the ticks offered, before the index.
            let offers = try await EnqueueProbe.tally(database.client)
            #expect(offers.offered == 200 && offers.repeated == 0, "\(offers)")
            let stillDue = try await database.client.query(
                "SELECT count(*) FROM tock.jobs WHERE next_run_at <= now()").decode(Int.self).all().first
            #expect(stillDue == 0)
        }
    }

    @Test("the enqueue probe counts a repeated fire time that the unique index drops")
    func enqueueProbeSeesDroppedRepeats() async throws {
        try await TestDatabase.withFresh { database, _ in
            try await EnqueueProbe.install(database.client)
            _ = try await database.createJob(JobDefinition(name: "j", script: "x.sh", schedule: "every 1h"))
            // The tick's own insert, twice for one fire time: the second is dropped by the index, and still counted.
            for _ in 0..<2 {
                _ = try await database.client.query("""
                    INSERT INTO tock.runs (job_id, trigger, scheduled_for, run_after)
                    SELECT id, 'schedule', '2030-01-01 00:00Z', '2030-01-01 00:00Z' FROM tock.jobs
                    ON CONFLICT (job_id, scheduled_for) WHERE trigger = 'schedule' DO NOTHING
                    """).collect()
            }
            #expect(try await database.runs(job: "j").count == 1)
            let offers = try await EnqueueProbe.tally(database.client)
            #expect(offers.offered == 2 && offers.repeated == 1, "\(offers)")
        }
    }

    @Test("4 workers over 1,000 pending runs claim and finish each exactly once")
    func claimExactlyOnce() async throws {
        try await TestDatabase.withFresh(maximumConnections: 8) { database, _ in
            _ = try await database.createJob(JobDefinition(name: "many", script: "x.sh"))
            _ = try await database.client.query("""
                INSERT INTO tock.runs (job_id, trigger) SELECT id, 'sql' FROM tock.jobs, generate_series(1, 1000)
                """).collect()
            let claimedIDs = Locked<[Int64]>([])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<4 {
                    group.addTask {
                        let worker = try await database.registerWorker(host: "test", pid: index, concurrency: 10,
                                                                       scriptsDirectory: nil, version: nil)
                        while true {
                            let batch = try await database.claimRuns(worker: worker, max: 10)
                            if batch.isEmpty { return }
                            for run in batch {
                                claimedIDs.withLock { $0.append(run.runId) }
                                let finished = try await database.finishRun(run.runId, worker: worker,
                                                                            outcome: RunOutcome(status: .succeeded, exitCode: 0))
                                #expect(finished)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let ids = claimedIDs.withLock { $0 }
            #expect(ids.count == 1000)
            #expect(Set(ids).count == 1000)
            let succeeded = try await database.client.query(
                "SELECT count(*) FROM tock.run_history WHERE status = 'succeeded'").decode(Int.self).all().first
            #expect(succeeded == 1000)
            let processed = try await database.client.query(
                "SELECT sum(runs_processed)::int FROM tock.workers").decode(Int.self).all().first
            #expect(processed == 1000)
        }
    }

    @Test("a claim and a finish answer only once committed: a commit that fails is an error, never a success")
    func answersOnlyOnceCommitted() async throws {
        // One connection: every call below, refused or not, leaves the same one for the next.
        try await TestDatabase.withFresh(maximumConnections: 1) { database, _ in
            _ = try await database.createJob(JobDefinition(name: "j", script: "x.sh"))
            let run = try await database.runNow("j")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            // A trigger deferred to the commit that refuses it: its error comes after the statement's rows and
            // CommandComplete, as a server shutting down between the two does. A caller that took the rows for done
            // started scripts for a claim that was undone, or left a finished run running (to be started again).
            _ = try await database.client.query("""
                CREATE FUNCTION public.refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'commit refused'; END $$
                """).collect()
            _ = try await database.client.query("""
                CREATE CONSTRAINT TRIGGER refuse_claim AFTER INSERT ON tock.run_leases
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_commit()
                """).collect()
            await #expect(throws: TockError.self) { try await database.claimRuns(worker: worker, max: 1) }
            #expect(try await database.run(run).status == "pending")
            _ = try await database.client.query("DROP TRIGGER refuse_claim ON tock.run_leases").collect()
            #expect(try await database.claimRuns(worker: worker, max: 1).map(\.runId) == [run])

            _ = try await database.client.query("""
                CREATE CONSTRAINT TRIGGER refuse_finish AFTER DELETE ON tock.run_leases
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_commit()
                """).collect()
            await #expect(throws: TockError.self) {
                try await database.finishRuns(worker: worker, [(run, RunOutcome(status: .succeeded, exitCode: 0))])
            }
            #expect(try await database.run(run).status == "running")
            _ = try await database.client.query("DROP TRIGGER refuse_finish ON tock.run_leases").collect()
            #expect(try await database.finishRuns(worker: worker, [(run, RunOutcome(status: .succeeded, exitCode: 0))]) == [run])
            #expect(try await database.run(run).status == "succeeded")
            // The same report again (its answer lost on the way back): finished, as the first said; another is not.
            #expect(try await database.finishRuns(worker: worker, [(run, RunOutcome(status: .succeeded, exitCode: 0))]) == [run])
            #expect(try await database.finishRuns(worker: worker, [(run, RunOutcome(status: .failed, exitCode: 1))]).isEmpty)
            #expect(try await database.run(run).status == "succeeded")

            // The writes someone acts on the answer of: a run-now's id is shown, a created job is reported created.
            _ = try await database.client.query("""
                CREATE CONSTRAINT TRIGGER refuse_enqueue AFTER INSERT ON tock.runs
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_commit()
                """).collect()
            _ = try await database.client.query("""
                CREATE CONSTRAINT TRIGGER refuse_job AFTER INSERT OR UPDATE ON tock.jobs
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_commit()
                """).collect()
            await #expect(throws: TockError.self) { try await database.runNow("j") }
            await #expect(throws: TockError.self) { try await database.createJob(JobDefinition(name: "k", script: "x.sh")) }
            await #expect(throws: TockError.self) { try await database.setJobEnabled("j", false) }
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.run_history").decode(Int.self).all() == [1])
            #expect(try await database.jobs().map(\.name) == ["j"])
            #expect(try await database.job("j").enabled)
            // A refused statement or commit leaves its connection outside any transaction: the next call works.
            _ = try await database.client.query("DROP TRIGGER refuse_enqueue ON tock.runs").collect()
            _ = try await database.client.query("DROP TRIGGER refuse_job ON tock.jobs").collect()
            await #expect(throws: TockError.self) { try await database.runNow("no-such-job") }
            let again = try await database.runNow("j")
            #expect(try await database.run(again).status == "pending")
        }
    }

    @Test("an output report that commits while a finish waits for the run leaves one output, the finished one")
    func outputReportRacingAFinish() async throws {
        try await TestDatabase.withFresh(maximumConnections: 4) { database, _ in
            _ = try await database.createJob(JobDefinition(name: "racer", script: "x.sh"))
            let run = try await database.runNow("racer")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            #expect(try await database.claimRuns(worker: worker, max: 1).map(\.runId) == [run])
            let reporting = AsyncStream<Void>.makeStream()
            let report = Task {
                try await database.client.withConnection { connection in
                    _ = try await connection.query("BEGIN", logger: TestDatabase.logger).collect()
                    _ = try await connection.query(
                        "SELECT tock.report_output(\(run), \(worker), 'so far', 6, false)", logger: TestDatabase.logger).collect()
                    reporting.continuation.yield()
                    // Held while the finish below waits for the run's row, then committed.
                    try await Task.sleep(for: .milliseconds(500))
                    _ = try await connection.query("COMMIT", logger: TestDatabase.logger).collect()
                }
            }
            for await _ in reporting.stream { break }
            #expect(try await database.finishRun(run, worker: worker,
                                                 outcome: RunOutcome(status: .succeeded, exitCode: 0, output: "all of it\n")))
            try await report.value
            let logs = try await database.client.query("SELECT output FROM tock.run_logs WHERE run_id = \(run)")
                .decode(String.self).all()
            #expect(logs == ["all of it\n"])
            #expect(try await database.run(run).output == "all of it\n")
            // The live row the finish waited for went too (a statement of its own in tock.end_runs sees it).
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.run_output").decode(Int.self).all() == [0])
        }
    }

    @Test("claims take the highest priority first, then the oldest")
    func claimOrder() async throws {
        try await TestDatabase.withFresh { database, _ in
            var low = JobDefinition(name: "low", script: "x.sh")
            low.priority = 10
            var high = JobDefinition(name: "high", script: "x.sh")
            high.priority = 90
            _ = try await database.createJob(low)
            _ = try await database.createJob(high)
            let first = try await database.runNow("low")
            let second = try await database.runNow("low")
            let urgent = try await database.runNow("high")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 3, scriptsDirectory: nil, version: nil)
            let claimed = try await database.claimRuns(worker: worker, max: 3).map(\.runId)
            #expect(claimed == [urgent, first, second])
        }
    }

    @Test("the next delayed run is the earliest pending run not yet due, whatever its priority")
    func nextDelayedRun() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "d", script: "x.sh"))
            func next() async throws -> String? {
                try await database.client.query(
                    "SELECT to_char(tock.next_delayed_run('2030-01-01 00:00Z') AT TIME ZONE 'UTC', 'HH24:MI')")
                    .decode(String?.self).all().first ?? nil
            }
            #expect(try await next() == nil)
            // Priority 90: one ready, one due at 00:30. 50: due at 00:10, and a cancelled one at 00:05.
            // 10: only ready runs. 0: due at 00:20.
            _ = try await database.client.query("""
                INSERT INTO tock.runs (job_id, trigger, priority, run_after)
                SELECT j.id, 'sql', v.priority, '2030-01-01 00:00Z'::timestamptz + v.delay
                FROM tock.jobs j, (VALUES (90, interval '-1 minute'), (90, '30 minutes'), (50, '10 minutes'),
                                          (50, '5 minutes'), (10, '-2 minutes'), (10, '0'), (0, '20 minutes')) v(priority, delay)
                """).collect()
            _ = try await database.client.query("""
                SELECT tock.cancel(id) FROM tock.runs WHERE run_after = '2030-01-01 00:05Z'
                """).collect()
            #expect(try await next() == "00:10")
            _ = try await database.client.query("DELETE FROM tock.runs WHERE priority = 50").collect()
            #expect(try await next() == "00:20")
            _ = try await database.client.query("DELETE FROM tock.runs WHERE priority = 0").collect()
            #expect(try await next() == "00:30")
            _ = try await database.client.query("DELETE FROM tock.runs WHERE priority = 90 AND run_after > '2030-01-01 00:00Z'").collect()
            #expect(try await next() == nil)
        }
    }

    @Test("a worker that says it stopped holds nothing: a run still leased to it (a claim whose answer it never got) fails over and is retried")
    func stoppedWorkerHoldsNothing() async throws {
        try await TestDatabase.withFresh { database, _ in
            var job = JobDefinition(name: "lost-answer", script: "x.sh")
            job.maxAttempts = 2
            _ = try await database.createJob(job)
            let run = try await database.runNow("lost-answer")
            let worker = try await database.registerWorker(host: "a", pid: 1, concurrency: 1, scriptsDirectory: nil,
                                                           version: nil, name: "w-stop")
            // Claimed in the database; the worker never learned of it.
            #expect(try await database.claimRuns(worker: worker, max: 1).map(\.runId) == [run])
            try await database.setWorkerState(worker: worker, state: "stopping")
            #expect(try await database.run(run, withOutput: false).status == "running", "a stopping worker's runs may still end")
            try await database.setWorkerState(worker: worker, state: "stopped")
            let ended = try await database.run(run, withOutput: false)
            #expect(ended.status == "failed" && ended.error?.contains("worker w-stop stopped without reporting") == true,
                    "\(ended.status) \(ended.error ?? "-")")
            let retry = try #require(try await database.runs(job: "lost-answer").first { $0.attempt == 2 })
            #expect(retry.status == "pending" && retry.firstRunId == run)
            #expect(try await database.client.query("SELECT count(*)::int FROM tock.run_leases").decode(Int.self).all() == [0])
        }
    }

    @Test("a worker asks for the next delayed run as of its claim: a run that came due since then is in the answer")
    func nextDelayedRunSinceTheClaim() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "d", script: "x.sh"))
            // Due 300 ms ago: after a claim that took 30 s to answer, it may not have been due at the claim. (30 s,
            // not 1 s: the calls between the insert and the question take their own time on a loaded machine.)
            let dueAt = try #require(try await database.client.query("""
                INSERT INTO tock.runs (job_id, trigger, run_after)
                SELECT id, 'sql', clock_timestamp() - interval '300 milliseconds' FROM tock.jobs RETURNING run_after
                """).decode(Date.self).all().first)
            #expect(try await database.nextDelayedRun() == nil)
            let sinceClaim = try #require(try await database.nextDelayedRun(since: .seconds(30)))
            #expect(abs(sinceClaim.timeIntervalSince(dueAt)) < 0.001)
        }
    }

    @Test("the functions workers and schedulers call in their loops keep the planner settings their speed depends on")
    func hotFunctionPlannerSettings() async throws {
        try await TestDatabase.withFresh { database, _ in
            // jit=off: a long queue's cost estimates pass jit_above_cost, and a claim then spends most of its time
            // compiling. enable_seqscan=off: statistics taken during a one-job backlog make each due job's overlap
            // probe scan the runs table. force_generic_plan: the claim is planned afresh on every call once the queue
            // is long, which costs more than the claim. enable_bitmapscan and enable_sort off: the claim's generic
            // plan sorts every ready run of a deep backlog instead of walking runs_claim_idx for the first 100.
            // rescue, every second from every scheduler, and
            // heartbeat, every second from every worker, walk the runs in flight and must never read the history
            // instead. See 30_runs.sql.
            let missing = try await database.client.query("""
                SELECT e.function || ': ' || e.setting
                FROM (VALUES ('tick', 'jit=off'), ('tick', 'enable_seqscan=off'),
                             ('claim_runs', 'jit=off'), ('claim_runs', 'enable_seqscan=off'),
                             ('claim_runs', 'plan_cache_mode=force_generic_plan'),
                             ('claim_runs', 'enable_bitmapscan=off'), ('claim_runs', 'enable_sort=off'),
                             ('finish_runs', 'jit=off'), ('rescue', 'jit=off'), ('rescue', 'enable_seqscan=off'),
                             ('next_delayed_run', 'jit=off'), ('next_delayed_run', 'enable_seqscan=off'),
                             ('earliest_pending', 'jit=off'), ('earliest_pending', 'enable_seqscan=off'),
                             ('earliest_pending_in', 'jit=off'), ('earliest_pending_in', 'enable_seqscan=off'),
                             ('earliest_pending_in', 'enable_bitmapscan=off'), ('earliest_pending_in', 'enable_sort=off'),
                             ('earliest_pending', 'enable_bitmapscan=off'), ('earliest_pending', 'enable_sort=off'),
                             ('heartbeat', 'enable_seqscan=off')) e(function, setting)
                WHERE NOT EXISTS (SELECT 1 FROM pg_proc p
                                  WHERE p.pronamespace = 'tock'::regnamespace AND p.proname = e.function
                                    AND e.setting = ANY (p.proconfig))
                ORDER BY 1
                """).decode(String.self).all()
            #expect(missing == [])
        }
    }

    @Test("a finish is recorded once: late, duplicate or foreign reports change nothing")
    func guardedFinish() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "once", script: "x.sh"))
            let run = try await database.runNow("once")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            let other = try await database.registerWorker(host: "t", pid: 2, concurrency: 1, scriptsDirectory: nil, version: nil)
            #expect(try await database.finishRun(run, worker: worker, outcome: RunOutcome(status: .succeeded)) == false)  // not claimed yet
            _ = try await database.claimRuns(worker: worker, max: 1)
            #expect(try await database.finishRun(run, worker: other, outcome: RunOutcome(status: .failed)) == false)
            #expect(try await database.finishRun(run, worker: worker,
                                                 outcome: RunOutcome(status: .succeeded, exitCode: 0, output: "ok\n", outputBytes: 3)))
            #expect(try await database.finishRun(run, worker: worker, outcome: RunOutcome(status: .failed)) == false)
            let info = try await database.run(run)
            #expect(info.status == "succeeded")
            #expect(info.output == "ok\n")
            #expect(info.workerId == worker)
        }
    }

    @Test("a job's runs in every state: newest first in its page and overview, deleted with it; a run names a job that exists")
    func runsOfAJob() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "a", script: "x.sh"))
            let other = try await database.createJob(JobDefinition(name: "b", script: "x.sh"))
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
            // Oldest to newest: succeeded, failed, running, pending. Finished runs and runs in flight are in two
            // different indexes (migration 0010), so each page and the overview merge them.
            var runs: [Int64] = []
            for _ in 0..<4 { runs.append(try await database.runNow("a")) }
            let otherRun = try await database.runNow("b")
            #expect(try await database.claimRuns(worker: worker, max: 3).map(\.runId) == Array(runs[0..<3]))
            try await database.finishRun(runs[0], worker: worker, outcome: RunOutcome(status: .succeeded, exitCode: 0))
            try await database.finishRun(runs[1], worker: worker, outcome: RunOutcome(status: .failed, exitCode: 1))
            #expect(try await database.runs(job: "a").map(\.status) == ["pending", "running", "failed", "succeeded"])
            #expect(try await database.runs(job: "a").map(\.id) == runs.reversed())
            #expect(try await database.runs(job: "a", limit: 2).map(\.id) == [runs[3], runs[2]])
            #expect(try await database.runs(job: "a", before: runs[3], limit: 2).map(\.id) == [runs[2], runs[1]])
            #expect(try await database.runs(job: "a", status: .running).map(\.id) == [runs[2]])
            #expect(try await database.runs(job: "a", status: .failed).map(\.id) == [runs[1]])
            #expect(try await database.runs(job: "b").map(\.id) == [otherRun])
            var job = try await database.job("a")
            #expect(job.lastRunId == runs[3] && job.lastRunStatus == "pending" && job.running == 1 && job.pending == 1)
            try await database.finishRun(runs[2], worker: worker, outcome: RunOutcome(status: .succeeded, exitCode: 0))
            _ = try await database.client.query("DELETE FROM tock.runs WHERE id = \(runs[3])").collect()
            job = try await database.job("a")
            #expect(job.lastRunId == runs[2] && job.lastRunStatus == "succeeded" && job.running == 0 && job.pending == 0)

            // What the foreign key kept: a run names a job that exists, and stays with it.
            let missing = await #expect(throws: PSQLError.self) {
                _ = try await database.client.query("INSERT INTO tock.runs (job_id, trigger) VALUES (\(other + 1000), 'sql')").collect()
            }
            #expect(missing?.serverInfo?[.sqlState] == "23503")
            #expect(missing?.serverInfo?[.message] == "job \(other + 1000) does not exist")
            await #expect(throws: PSQLError.self) {
                _ = try await database.client.query("UPDATE tock.runs SET job_id = job_id + 1 WHERE id = \(otherRun)").collect()
            }
            #expect(try await database.runs(job: "b").map(\.id) == [otherRun])

            // Deleting a job deletes its runs in every state (one of them running still), and no other job's.
            let running = try await database.runNow("a")
            let pending = try await database.runNow("a")
            #expect(try await database.claimRuns(worker: worker, max: 2).map(\.runId) == [otherRun, running])
            _ = try await database.deleteJob("a")
            let left = try await database.client.query("SELECT id FROM tock.runs ORDER BY id").decode(Int64.self).all()
            #expect(left == [otherRun], "\(runs + [running, pending])")
        }
    }

    @Test("overlap 'skip' drops a fire time while a run is pending; a missed backlog fires once, then the next fire time")
    func overlapAndMisfire() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "minutely", script: "x.sh", schedule: "every 1m"))
            // Ten fire times missed (downtime): one run, and the schedule moves past now.
            _ = try await database.client.query("UPDATE tock.jobs SET next_run_at = now() - interval '10 minutes'").collect()
            _ = try await database.tick()
            #expect(try await database.runs(job: "minutely").count == 1)
            let next = try #require(try await database.job("minutely").nextRunAt)
            #expect(next > Date())
            // Due again while the first run is still pending: skipped, schedule still advances.
            _ = try await database.client.query("UPDATE tock.jobs SET next_run_at = now() - interval '1 second'").collect()
            _ = try await database.tick()
            #expect(try await database.runs(job: "minutely").count == 1)
            #expect(try #require(try await database.job("minutely").nextRunAt) > Date())
        }
    }

    @Test("lookahead: a fire time is enqueued early, held until due; skip jobs with a run wait; an edit drops it")
    func tickLookahead() async throws {
        try await TestDatabase.withFresh { database, _ in
            func sql<T: PostgresDecodable & Sendable>(_ type: T.Type, _ query: PostgresQuery) async throws -> T? {
                try await database.client.query(query).decode(T.self).all().first
            }
            _ = try await database.createJob(JobDefinition(name: "early", script: "x.sh", schedule: "every 1h"))
            _ = try await database.createJob(JobDefinition(name: "busy", script: "x.sh", schedule: "every 1h"))
            _ = try await database.createJob(JobDefinition(name: "later", script: "x.sh", schedule: "every 1h"))
            let busyRun = try await database.runNow("busy")
            // Clock fixed at T (the tests move p_now, never sleep): early and busy fire at T + 0.5 s, later at T + 5 s.
            _ = try await database.client.query("""
                UPDATE tock.jobs SET next_run_at = '2030-01-01 00:00:00.5+00', anchor_at = '2029-12-31 23:00:00.5+00'
                WHERE name IN ('early', 'busy');
                """).collect()
            _ = try await database.client.query(
                "UPDATE tock.jobs SET next_run_at = '2030-01-01 00:00:05+00' WHERE name = 'later'").collect()
            let next = try await sql(Date.self, "SELECT tock.tick('2030-01-01 00:00:00+00', 1000, interval '1 second')")
            // early: enqueued now, held until its fire time. busy (overlap skip, a run pending) waits for its fire
            // time, so the scheduler is told to come back then, not at later's fire time less the lookahead.
            let early = try await database.runs(job: "early")
            #expect(early.count == 1)
            #expect(early.first?.runAfter == TockJSON.parseTimestamp("2030-01-01T00:00:00.5Z"))
            #expect(early.first?.scheduledFor == early.first?.runAfter)
            #expect(try await database.runs(job: "busy").map(\.id) == [busyRun])
            #expect(next == TockJSON.parseTimestamp("2030-01-01T00:00:00.5Z"))
            // Held: nothing to claim before the fire time, the run at it.
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 5, scriptsDirectory: nil, version: nil)
            let before = try await sql(Int.self, """
                SELECT count(*)::int FROM tock.claim_runs(\(worker), 5, '2030-01-01 00:00:00.4+00') WHERE job_name = 'early'
                """)
            #expect(before == 0)
            // At busy's fire time its skip is decided (the manual run is still pending: skipped); early's run is due.
            let after = try await sql(Date.self, "SELECT tock.tick('2030-01-01 00:00:00.5+00', 1000, interval '1 second')")
            #expect(try await database.runs(job: "busy").count == 1)
            #expect(after == TockJSON.parseTimestamp("2030-01-01T00:00:04Z"), "later's fire time less the lookahead")
            // An edit before the fire time drops the run enqueued for the old schedule. The fire time is half a
            // minute away (a minute's lookahead), so a loaded machine cannot let it pass before the edit.
            _ = try await database.client.query(
                "UPDATE tock.jobs SET next_run_at = now() + interval '30 seconds' WHERE name = 'later'").collect()
            _ = try await sql(Date.self, "SELECT tock.tick(now(), 1000, interval '1 minute')")
            #expect(try await database.runs(job: "later").count == 1)
            _ = try await database.setJobEnabled("later", false)
            #expect(try await database.runs(job: "later").isEmpty, "pausing drops the run that was not due yet")
        }
    }

    @Test("overlap 'queue' runs one run of a job at a time, oldest first, even with concurrent claimers")
    func overlapQueue() async throws {
        try await TestDatabase.withFresh(maximumConnections: 8) { database, _ in
            var job = JobDefinition(name: "serial", script: "x.sh")
            job.overlap = "queue"
            _ = try await database.createJob(job)
            _ = try await database.createJob(JobDefinition(name: "free", script: "x.sh"))
            let serial = try await [database.runNow("serial"), database.runNow("serial"), database.runNow("serial")]
            let free = try await [database.runNow("free"), database.runNow("free")]
            let first = try await database.registerWorker(host: "t", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
            let second = try await database.registerWorker(host: "t", pid: 2, concurrency: 10, scriptsDirectory: nil, version: nil)
            let third = try await database.registerWorker(host: "t", pid: 3, concurrency: 10, scriptsDirectory: nil, version: nil)
            let workers = [first, second, third]
            // Three claimers at once: both free runs, and exactly one serial run (the oldest).
            async let a = database.claimRuns(worker: first, max: 10)
            async let b = database.claimRuns(worker: second, max: 10)
            async let c = database.claimRuns(worker: third, max: 10)
            let claimed = try await (a + b + c).map(\.runId)
            #expect(Set(claimed) == Set(free + [serial[0]]))
            #expect(try await database.claimRuns(worker: workers[0], max: 10).isEmpty)
            // When it finishes, the next one becomes claimable.
            let holder = try #require(try await database.run(serial[0], withOutput: false).workerId)
            _ = try await database.finishRun(serial[0], worker: holder, outcome: RunOutcome(status: .succeeded))
            #expect(try await database.claimRuns(worker: workers[1], max: 10).map(\.runId) == [serial[1]])
        }
    }

    @Test("misfire 'skip' drops a fire time missed by downtime; 'run_once' runs it once")
    func misfireSkip() async throws {
        try await TestDatabase.withFresh { database, _ in
            var skip = JobDefinition(name: "skipper", script: "x.sh", schedule: "every 1m")
            skip.misfire = "skip"
            _ = try await database.createJob(skip)
            _ = try await database.createJob(JobDefinition(name: "once", script: "x.sh", schedule: "every 1m"))
            _ = try await database.client.query("UPDATE tock.jobs SET next_run_at = now() - interval '10 minutes'").collect()
            _ = try await database.tick()
            #expect(try await database.runs(job: "skipper").isEmpty)
            #expect(try await database.runs(job: "once").count == 1)
            #expect(try #require(try await database.job("skipper").nextRunAt) > Date())
        }
    }

    @Test("rescue: a worker that stopped heartbeating loses its runs to a retry (attempts left) or a final failure")
    func rescueDeadWorker() async throws {
        try await TestDatabase.withFresh { database, _ in
            var retried = JobDefinition(name: "retried", script: "x.sh")
            retried.maxAttempts = 2
            _ = try await database.createJob(retried)
            _ = try await database.createJob(JobDefinition(name: "single", script: "x.sh"))
            let first = try await database.runNow("retried")
            let second = try await database.runNow("single")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 2, scriptsDirectory: nil, version: nil)
            _ = try await database.claimRuns(worker: worker, max: 2)
            // Fresh heartbeat: nothing happens, even with no session lock.
            #expect(try await database.rescue() == 0)
            // A minute later with no heartbeat (the clock moved, not slept): its runs are recovered.
            let rescued = try await database.client.query("SELECT tock.rescue(now() + interval '1 minute')")
                .decode(Int.self).all().first
            #expect(rescued == 2)
            #expect(try await database.workers().first?.state == "lost")
            let runs = try await database.runs()
            #expect(try await database.run(first, withOutput: false).status == "failed")
            #expect(try await database.run(second, withOutput: false).status == "failed")
            let retry = try #require(runs.first { $0.trigger == "retry" })
            #expect(retry.firstRunId == first)
            #expect(retry.status == "pending")
            #expect(retry.runAfter == retry.enqueuedAt)  // at once: no backoff for a lost worker
            // The lost worker's late report is ignored.
            #expect(try await database.finishRun(first, worker: worker, outcome: RunOutcome(status: .succeeded)) == false)
            #expect(try await database.finishRun(second, worker: worker, outcome: RunOutcome(status: .failed)) == false,
                    "a failure the worker reports is not the rescue's, which says the worker was lost")
            #expect(try await database.rescue() == 0)
        }
    }

    @Test("a worker's name: host:pid, or a chosen one (a job name's shape) that no live worker holds; a dead holder is judged at once")
    func workerNames() async throws {
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.registerWorker(host: "h", pid: 7, concurrency: 1, scriptsDirectory: nil, version: nil)
            let named = try await database.registerWorker(host: "h", pid: 8, concurrency: 1, scriptsDirectory: nil, version: nil,
                                                          name: "etl-1")
            #expect(try await database.workers().map(\.name).sorted() == ["etl-1", "h:7"])
            let taken = await #expect(throws: TockError.self) {
                _ = try await database.registerWorker(host: "g", pid: 9, concurrency: 1, scriptsDirectory: nil, version: nil, name: "etl-1")
            }
            #expect(taken?.kind == .conflict && taken?.field == "name" && taken?.message.contains("live worker \(named)") == true,
                    "\(String(describing: taken))")
            for bad in ["", "w" + String(repeating: "x", count: 100), "two\nlines", "h:7", "1abc", "etl 1", "etl\u{202e}1"] {
                let error = await #expect(throws: TockError.self) {
                    _ = try await database.registerWorker(host: "g", pid: 9, concurrency: 1, scriptsDirectory: nil, version: nil, name: bad)
                }
                #expect(error?.kind == .invalidInput && error?.field == "name", "\(bad.debugDescription): \(String(describing: error))")
            }
            // Stopped, the name is free for its next start.
            try await database.setWorkerState(worker: named, state: "stopped")
            let restarted = try await database.registerWorker(host: "h", pid: 10, concurrency: 1, scriptsDirectory: nil, version: nil,
                                                              name: "etl-1")
            // Killed: its session lock is gone. Registering its name 5 s on judges it lost, and takes the name.
            try await TestDatabase.withClient(settings, maximumConnections: 1) { session in
                _ = try await session.query("SELECT tock.hold_worker_session(\(restarted))").collect()
            }
            #expect(try await eventually {
                try await database.client.query("SELECT NOT tock.worker_session_alive(\(restarted))").decode(Bool.self).all() == [true]
            })
            let token = String(repeating: "t", count: 32)
            _ = try await database.client.query(PostgresQuery(unsafeSQL: """
                SELECT tock.register_worker('h', 11, 1, p_now => now() + interval '5 seconds', p_lease_token => '\(token)',
                                            p_name => 'etl-1')
                """)).collect()
            let states = try await database.workers().filter { $0.name == "etl-1" }.sorted { $0.id < $1.id }.map(\.state)
            #expect(states == ["stopped", "lost", "running"], "\(states)")
        }
    }

    @Test("rescue goes by a worker's session lock once it has held it since the server started, and only by the lock in its own database")
    func sessionLockRules() async throws {
        let other = try await TestDatabase.create()
        try await TestDatabase.withFresh { database, settings in
            try await TestDatabase.withClient(other, maximumConnections: 1) { otherClient in
                // Worker 1 of both databases: the other's holds its session lock for the whole test; this one's held
                // it on a connection that is gone now.
                let otherDatabase = Database(client: otherClient, logger: TestDatabase.logger, settings: other)
                let otherWorker = try await otherDatabase.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
                let worker = try await database.registerWorker(host: "t", pid: 2, concurrency: 1, scriptsDirectory: nil, version: nil)
                #expect(worker == otherWorker)
                // Held its lock before the server last started (a crash ended every session): it may still be
                // reconnecting while the server finishes crash recovery, which takes seconds on a loaded machine.
                let restarted = try await database.registerWorker(host: "t", pid: 4, concurrency: 1, scriptsDirectory: nil, version: nil)
                _ = try await otherClient.query("SELECT tock.hold_worker_session(\(otherWorker))").collect()
                try await TestDatabase.withClient(settings, maximumConnections: 1) { session in
                    _ = try await session.query("SELECT tock.hold_worker_session(\(worker))").collect()
                    _ = try await session.query("SELECT tock.hold_worker_session(\(restarted))").collect()
                }
                _ = try await database.client.query("""
                    UPDATE tock.workers SET session_since = pg_postmaster_start_time() - interval '1 second'
                    WHERE id = \(restarted)
                    """).collect()
                // Its server process lets go of the lock when it notices the client left, a moment later (longer
                // on busy cores): rescue is judged from then on.
                #expect(try await eventually {
                    try await database.client.query("SELECT NOT tock.worker_session_alive(\(worker))").decode(Bool.self).all() == [true]
                })
                // Registered, and never held its lock (a first connect that is slow): judged by heartbeats alone.
                let starting = try await database.registerWorker(host: "t", pid: 3, concurrency: 1, scriptsDirectory: nil, version: nil)

                func rescue(_ client: PostgresClient, after seconds: Int) async throws {
                    _ = try await client.query(PostgresQuery(unsafeSQL: "SELECT tock.rescue(now() + interval '\(seconds) seconds')")).collect()
                }
                func states(_ database: Database) async throws -> [Int64: String] {
                    Dictionary(uniqueKeysWithValues: try await database.workers().map { ($0.id, $0.state) })
                }
                // 5 s without a heartbeat: past the 2 s a worker without its lock gets, short of the 30 s silence.
                try await rescue(otherClient, after: 5)
                try await rescue(database.client, after: 5)
                #expect(try await states(otherDatabase) == [otherWorker: "running"])
                #expect(try await states(database) == [worker: "lost", starting: "running", restarted: "running"])
                try await rescue(database.client, after: 31)
                #expect(try await states(database)[starting] == "lost")
                #expect(try await states(database)[restarted] == "lost")
            }
        }
    }

    @Test("heartbeat: a run on a worker that does not hold it (its claim's answer was lost) goes back to the queue a minute after its claim, without using an attempt")
    func heartbeatRequeuesUnheldRuns() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let held = try await database.runNow("job")
            let lost = try await database.runNow("job")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 3, scriptsDirectory: nil, version: nil)
            #expect(try await database.claimRuns(worker: worker, max: 2).count == 2)
            // A third run, claimed 90 s later by the moved clock: only 30 s before the heartbeats below.
            let late = try await database.runNow("job")
            _ = try await database.client.fetch(
                "SELECT * FROM tock.claim_runs(\(worker), 1, now() + interval '90 seconds')", logger: database.logger)
            func heartbeat(holding runs: [Int64]?, after seconds: Int) async throws -> String? {
                try await database.client.fetch("""
                    SELECT tock.heartbeat(\(worker), now() + make_interval(secs => \(Double(seconds))), \(runs)::bigint[])
                    """, logger: database.logger).first?.decode(String?.self)
            }
            func status(_ run: Int64) async throws -> String { try await database.run(run, withOutput: false).status }

            // No list (a claim of the worker's under way), or within the minute: nothing changes.
            #expect(try await heartbeat(holding: nil, after: 120) == "running")
            #expect(try await heartbeat(holding: [held], after: 50) == "running")
            #expect(try await status(lost) == "running")
            // Two minutes on, the worker still does not hold the second run: it never started, so it is queued again
            // as the same attempt. The held run and the late one are left alone.
            #expect(try await heartbeat(holding: [held], after: 120) == "running")
            let requeued = try await database.run(lost, withOutput: false)
            #expect(requeued.status == "pending")
            #expect(requeued.attempt == 1)
            #expect(requeued.startedAt == nil && requeued.workerId == nil)
            #expect(try await status(held) == "running")
            #expect(try await status(late) == "running")
            #expect(try await database.runs(job: "job").count == 3)  // no retry row: no attempt was used
            let reclaimed = try await database.client.fetch(
                "SELECT run_id FROM tock.claim_runs(\(worker), 5, now() + interval '3 minutes')", logger: database.logger)
                .map { try $0.decode(Int64.self) }
            #expect(reclaimed == [lost])
        }
    }

    @Test("rescue: a run left running 10 minutes past the timeout it was claimed with is failed over; one within it is not, even once its job's timeout is shortened")
    func rescueOrphanedRun() async throws {
        try await TestDatabase.withFresh { database, _ in
            var orphaned = JobDefinition(name: "orphaned", script: "x.sh")
            orphaned.maxAttempts = 2
            orphaned.timeoutSeconds = 60
            _ = try await database.createJob(orphaned)
            var patient = JobDefinition(name: "patient", script: "x.sh")
            patient.timeoutSeconds = 3600
            _ = try await database.createJob(patient)
            let lost = try await database.runNow("orphaned")
            let slow = try await database.runNow("patient")
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 2, scriptsDirectory: nil, version: nil)
            let claimed = try await database.claimRuns(worker: worker, max: 2)
            #expect(claimed.map(\.timeoutSeconds).sorted() == [60, 3600])
            // An operator shortens the hour-long job's timeout while its run is under way. The worker enforces the
            // hour it claimed the run with, so rescue must too: failing the run over at 1 + 10 minutes would start
            // a retry while the script still runs.
            _ = try await database.updateJob("patient", changes: ["timeout_seconds": .integer(60)])

            // The clock moves on and the worker stays alive (it heartbeats at the moved clock), but it never
            // reports the first run: the report it gave up on.
            func rescue(after minutes: Int) async throws -> Int? {
                _ = try await database.client.fetch(
                    "SELECT tock.heartbeat(\(worker), now() + make_interval(mins => \(Int32(minutes))))", logger: database.logger)
                return try await database.client.fetch(
                    "SELECT tock.rescue(now() + make_interval(mins => \(Int32(minutes))))", logger: database.logger)
                    .first?.decode(Int.self)
            }
            #expect(try await rescue(after: 10) == 0)  // 9 minutes past the 1-minute timeout: not yet
            #expect(try await rescue(after: 12) == 1)
            #expect(try await database.workers().first?.state == "running")
            let failed = try await database.run(lost, withOutput: false)
            #expect(failed.status == "failed")
            #expect(failed.error?.contains("past its timeout of 00:01:00: worker t:1 never reported how it ended") == true,
                    "\(failed.error ?? "")")
            let retry = try #require(try await database.runs(job: "orphaned").first { $0.trigger == "retry" })
            #expect(retry.status == "pending")
            #expect(retry.firstRunId == lost)
            // The hour-long run is still within the timeout it was claimed with, and the worker's late report of
            // the first is ignored.
            #expect(try await database.run(slow, withOutput: false).status == "running")
            #expect(try await database.finishRun(lost, worker: worker, outcome: RunOutcome(status: .succeeded)) == false)
            #expect(try await rescue(after: 12) == 0)
            #expect(try await rescue(after: 69) == 0)
            #expect(try await rescue(after: 71) == 1)
            let overdue = try await database.run(slow, withOutput: false)
            #expect(overdue.error?.contains("past its timeout of 01:00:00") == true, "\(overdue.error ?? "")")
        }
    }

    @Test("jobs: bad input names the field, and a bad INSERT from psql writes nothing")
    func badJobs() async throws {
        try await TestDatabase.withFresh { database, _ in
            func refused(_ job: JobDefinition, field: String, _ fragment: String) async {
                do {
                    _ = try await database.createJob(job)
                    Issue.record("\(job) was accepted")
                } catch {
                    #expect(error.field == field, "\(error.message)")
                    #expect(error.message.contains(fragment), "\(error.message)")
                }
            }
            await refused(JobDefinition(name: "a", script: "/etc/passwd"), field: "script", "relative")
            await refused(JobDefinition(name: "a", script: "../up.sh"), field: "script", "without '..'")
            await refused(JobDefinition(name: "1st", script: "x.sh"), field: "name", "not a job name")
            await refused(JobDefinition(name: "a", script: "x.sh", timezone: "Nowhere/Land"), field: "timezone", "unknown time zone")
            await refused(JobDefinition(name: "a", script: "x.sh", schedule: "0 0 32 * *"), field: "schedule.cron", "'32'")
            var priority = JobDefinition(name: "a", script: "x.sh")
            priority.priority = 101
            await refused(priority, field: "priority", "out of range 0-100")
            _ = try await database.createJob(JobDefinition(name: "dup", script: "x.sh"))
            do {
                _ = try await database.createJob(JobDefinition(name: "dup", script: "y.sh"))
                Issue.record("duplicate accepted")
            } catch let error as TockError {
                #expect(error.kind == .conflict)
                #expect(error.message == "name: a job named 'dup' already exists")
            }
            // Straight SQL obeys the same rules.
            await #expect(throws: PSQLError.self) {
                _ = try await database.client.query(
                    "INSERT INTO tock.jobs (name, script, schedule) VALUES ('raw', 'x.sh', 'every 0s')").collect()
            }
            await #expect(throws: PSQLError.self) {
                _ = try await database.client.query("UPDATE tock.jobs SET timezone = 'Nowhere' WHERE name = 'dup'").collect()
            }
            let jobs = try await database.jobs()
            #expect(jobs.map(\.name) == ["dup"])
            #expect(jobs.first?.timezone == "UTC")
        }
    }

    @Test("edit, pause and resume keep next_run_at in step; a psql INSERT gets its schedule parsed too")
    func editPauseResume() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.client.query(
                "INSERT INTO tock.jobs (name, script, schedule, timezone) VALUES ('raw', 'x.sh', 'daily at 06:00', 'asia/hong_kong')").collect()
            var job = try await database.job("raw")
            #expect(job.timezone == "Asia/Hong_Kong")
            #expect(job.scheduleDescription == "daily at 06:00")
            #expect(job.nextRunAt != nil)
            try await database.setJobEnabled("raw", false)
            job = try await database.job("raw")
            #expect(job.state == "paused")
            #expect(job.nextRunAt == nil)
            try await database.setJobEnabled("raw", true)
            _ = try await database.updateJob("raw", changes: ["schedule": .text("manual"), "priority": .integer(70)])
            job = try await database.job("raw")
            #expect(job.nextRunAt == nil)
            #expect(job.priority == 70)
            await #expect(throws: TockError.self) {
                _ = try await database.updateJob("raw", changes: ["colour": .text("red")])
            }
            await #expect(throws: TockError.self) { _ = try await database.runNow("nope") }
        }
    }

    @Test("a run-now NOTIFYs tock_runs, and a new due job NOTIFYs tock_jobs")
    func notifications() async throws {
        try await TestDatabase.withFresh { database, settings in
            let received = Locked<[String]>([])
            let listening = AsyncStream<Void>.makeStream()
            var listener = NotificationListener(settings: settings, channels: ["tock_runs", "tock_jobs"],
                                                logger: TestDatabase.logger)
            // The whole suite shares two cores: give the probe's round trip the slack the production default (2 s)
            // does not need, so a loaded moment is not taken for a connection without notifications.
            listener.probeTimeout = .seconds(30)
            let task = Task { [listener] in
                await listener.run { event in
                    switch event {
                    case .listening: listening.continuation.yield()
                    case .notification(let channel, _): received.withLock { $0.append(channel) }
                    // The probe after LISTEN must succeed on a direct connection: this shows up as a failure.
                    case .notificationsUnavailable: received.withLock { $0.append("notifications unavailable") }
                    }
                }
            }
            defer { task.cancel() }
            for await _ in listening.stream { break }
            _ = try await database.createJob(JobDefinition(name: "n", script: "x.sh", schedule: "every 1h"))
            _ = try await database.runNow("n")
            #expect(try await eventually { received.withLock { Set($0) } == ["tock_runs", "tock_jobs"] },
                    "received: \(received.withLock { $0 })")

            // One NOTIFY per statement however many runs it enqueues; none for a run inserted already running.
            // Notifications arrive in commit order, so once the last run-now's has come, the count is final.
            _ = try await database.client.fetch(
                "INSERT INTO tock.runs (job_id, trigger, run_after) SELECT id, 'sql', now() + interval '1 hour' FROM tock.jobs, generate_series(1, 500)",
                logger: database.logger)
            _ = try await database.client.fetch("""
                INSERT INTO tock.runs (job_id, trigger, status, started_at)
                SELECT id, 'sql', 'running', now() FROM tock.jobs
                """, logger: database.logger)
            _ = try await database.runNow("n")
            let runs = { received.withLock { $0.filter { $0 == "tock_runs" }.count } }
            #expect(try await eventually { runs() >= 3 })
            #expect(runs() == 3, "received: \(received.withLock { $0 })")
        }
    }
}
