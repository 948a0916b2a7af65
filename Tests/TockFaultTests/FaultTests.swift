import Foundation
import PostgresNIO
import Testing
import TockCluster
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

func count(_ database: Database, _ sql: PostgresQuery) async throws -> Int {
    try await database.client.query(sql).decode(Int.self).all().first ?? -1
}

/// The database server's clock now (clock_timestamp(), not the transaction's start).
func databaseNow(_ database: Database) async throws -> Date {
    try #require(try await database.client.query("SELECT clock_timestamp()").decode(Date.self).all().first)
}

/// Each case asserts from the database that no run was lost and none ran twice.
@Suite("faults: real processes killed, stopped and restarted", .serialized)
struct FaultTests {
    @Test("kill -9 a worker running a 30 s script: its script is stopped by the guard, and the run is re-queued and completed by another worker")
    func killedWorker() async throws {
        // Attempt 1 takes 30 s (it will not finish: its worker dies), in a shell with a child; attempt 2 finishes at
        // once. Attempt 1 writes the shell's and the child's process ids.
        let pids = NSTemporaryDirectory() + "tock-fault-pids-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: pids) }
        let directory = try makeScriptsDirectory(["scripts/long.sh": """
            #!/bin/sh
            echo "attempt $TOCK_ATTEMPT"
            if [ "$TOCK_ATTEMPT" = 1 ]; then sleep 30 & echo "$$ $!" > \(pids); wait; fi
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var job = JobDefinition(name: "long", script: "long.sh")
            job.maxAttempts = 2
            _ = try await database.createJob(job)
            let doomed = try TockProcess(["worker", "--concurrency", "1"], settings: settings, directory: directory)
            let scheduler = try TockProcess(["scheduler"], settings: settings, directory: directory)
            let run = try await database.runNow("long")
            #expect(try await eventually { try await database.run(run, withOutput: false).status == "running" })
            let survivor = try TockProcess(["worker", "--concurrency", "1"], settings: settings, directory: directory)
            #expect(try await eventually { try await database.workers().filter(\.alive).count == 2 })

            #expect(try await eventually { pidsWritten(to: pids).count == 2 })
            let scriptPids = pidsWritten(to: pids)
            #expect(scriptPids.count == 2 && scriptPids.allSatisfy(processRuns))
            // The database's clock just before the kill: the rescue's own time on that clock (the failed attempt's
            // finished_at, which tock.rescue sets) less this is at least what the rescue took, never less.
            let beforeKill = try await databaseNow(database)
            doomed.signal(SIGKILL)
            let killedAt = ContinuousClock.now
            // The worker's script guard sees it gone and stops the script's whole process group (SIGTERM), so the
            // first attempt does not run on beside the retry.
            #expect(try await eventually(timeout: .seconds(10), interval: .milliseconds(10)) {
                !scriptPids.contains(where: processRuns)
            })
            print("fault 1: kill -9 to the dead worker's script and its child stopped: \(ContinuousClock.now - killedAt)")
            #expect(try await eventually(timeout: .seconds(15), interval: .milliseconds(10)) {
                try await database.run(run, withOutput: false).status != "running"
            })
            print("fault 1: kill -9 to run re-queued, seen by the test: \(ContinuousClock.now - killedAt)")

            #expect(try await eventually(timeout: .seconds(60)) {
                try await count(database, "SELECT count(*)::int FROM tock.run_history WHERE status = 'succeeded'") == 1
            })
            let runs = try await database.runs(job: "long").sorted { $0.id < $1.id }
            #expect(runs.map(\.status) == ["failed", "succeeded"])
            #expect(runs.map(\.attempt) == [1, 2])
            #expect(runs.last?.firstRunId == run)
            #expect(runs.first?.error?.contains("was lost (its database session ended)") == true, "\(runs.first?.error ?? "")")
            // What the product promises: a dead worker's runs are back within 3 s (the scheduler runs tock.rescue each
            // second, and a worker whose session lock is gone is lost once its 1 s heartbeat is 2 s stale). Measured on
            // the database's clock from before the kill to the rescue's statement, so neither this test's polling nor
            // its share of a loaded machine counts; 5 s leaves 2 s for the scheduler's calls on a busy machine.
            let rescuedAfter = try #require(runs.first?.finishedAt).timeIntervalSince(beforeKill)
            print("fault 1: kill -9 to run re-queued, on the database's clock: \(String(format: "%.2f", rescuedAfter)) s (promised: 3 s)")
            #expect(rescuedAfter < 5, "the rescue came \(rescuedAfter) s after the kill")
            #expect(runs.last?.workerName?.hasSuffix(":\(survivor.pid)") == true)
            let lost = try await database.workers().first { $0.name.hasSuffix(":\(doomed.pid)") }
            #expect(lost?.state == "lost")
            survivor.signal(SIGTERM)
            scheduler.signal(SIGTERM)
            #expect(try await survivor.wait() == 0)
            #expect(try await scheduler.wait() == 0)
        }
    }

    @Test("kill -9 a worker's script guard: the worker starts another, which stops the running script when the worker is killed too")
    func killedGuard() async throws {
        let pids = NSTemporaryDirectory() + "tock-fault-guard-pids-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: pids) }
        let directory = try makeScriptsDirectory(["scripts/long.sh": """
            #!/bin/sh
            sleep 30 & echo "$$ $!" > \(pids); wait
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "long", script: "long.sh"))
            let worker = try TockProcess(["worker", "--concurrency", "1"], settings: settings, directory: directory)
            _ = try await database.runNow("long")
            #expect(try await eventually { pidsWritten(to: pids).count == 2 })
            let scriptPids = pidsWritten(to: pids)
            let guards = childProcesses(of: worker.pid, running: "guard-scripts")
            try #require(guards.count == 1, "the worker's script guard")
            // The guard ignores every other signal; SIGKILL stands for the OOM killer too.
            kill(guards[0], SIGKILL)
            let killedAt = ContinuousClock.now
            // Replaced at the worker's next heartbeat (1 s), watching the same shared memory: the script that was
            // running before it started is guarded by it.
            #expect(try await eventually(timeout: .seconds(10), interval: .milliseconds(10)) {
                childProcesses(of: worker.pid, running: "guard-scripts").contains { $0 != guards[0] }
            }, "\(worker.log)")
            print("fault 7: kill -9 to the script guard replaced: \(ContinuousClock.now - killedAt)")
            // The new guard can be seen running a moment before the worker's log line about it is written.
            #expect(try await eventually(timeout: .seconds(5), interval: .milliseconds(10)) {
                worker.log.contains("the script guard was killed by signal 9; started a new one")
            }, "\(worker.log)")
            #expect(scriptPids.count == 2 && scriptPids.allSatisfy(processRuns))
            worker.signal(SIGKILL)
            #expect(try await eventually(timeout: .seconds(10), interval: .milliseconds(10)) {
                !scriptPids.contains(where: processRuns)
            }, "the script outlived its worker")
        }
    }

    @Test("kill -9 a worker whose script started a setsid daemon and a double-forked one, each in a cgroup: none runs 1 s later",
          .enabled(if: ScriptContainment.probe().mode == .cgroup, "this machine gives no cgroup v2 the worker may create"))
    func killedWorkerDaemonsInCgroups() async throws {
        try await killedWorkerDaemons(containment: "cgroup")
    }

    @Test("kill -9 a worker whose script started a setsid daemon and a double-forked one, under a subreaper: none runs 1 s later")
    func killedWorkerDaemonsUnderSubreaper() async throws {
        try await killedWorkerDaemons(containment: "subreaper")
    }

    func killedWorkerDaemons(containment: String) async throws {
        let pids = NSTemporaryDirectory() + "tock-fault-daemons-\(containment)-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: pids) }
        let directory = try makeScriptsDirectory(["scripts/daemons.sh": """
            #!/bin/sh
            setsid sh -c 'echo $$ >> \(pids); exec sleep 300' </dev/null >/dev/null 2>&1 &
            (sh -c 'echo $$ >> \(pids); exec sleep 301' </dev/null >/dev/null 2>&1 &)
            sleep 300
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "daemons", script: "daemons.sh"))
            let worker = try TockProcess(["worker", "--concurrency", "1", "--containment", containment],
                                         settings: settings, directory: directory)
            _ = try await database.runNow("daemons")
            #expect(try await eventually { pidsWritten(to: pids).count == 2 }, "\(worker.log)")
            let daemons = pidsWritten(to: pids)
            #expect(daemons.allSatisfy(processRuns))
            #expect(worker.log.contains("containment=\(containment)") || worker.log.contains("\"containment\":\"\(containment)"),
                    "\(worker.log)")
            worker.signal(SIGKILL)
            let killedAt = ContinuousClock.now
            #expect(try await eventually(timeout: .seconds(1), interval: .milliseconds(10)) {
                !daemons.contains(where: processRuns)
            }, "the daemons outlived their worker: \(daemons.filter(processRuns))")
            print("fault 8 (\(containment)): kill -9 to the run's setsid and double-forked daemons stopped: \(ContinuousClock.now - killedAt)")
        }
    }

    @Test("restart PostgreSQL (pg_ctl restart -m fast) while 200 short runs flow: all complete, each script started once",
          .enabled(if: TestDatabase.cluster != nil, "needs the embedded test cluster (ops/test)"))
    func databaseRestart() async throws {
        let executions = ExecutionLog("restart")
        defer { executions.remove() }
        let directory = try makeScriptsDirectory(["scripts/quick.sh": "#!/bin/sh\n\(executions.record)\necho \"$TOCK_RUN_ID\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try #require(TestDatabase.cluster)
        let settings = try await TestDatabase.create()
        try await TestDatabase.withClient(settings) { client in
            let database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            _ = try await database.createJob(JobDefinition(name: "quick", script: "quick.sh"))
            let workers = try (0..<2).map { _ in
                try TockProcess(["worker", "--concurrency", "4"], settings: settings, directory: directory)
            }
            #expect(try await eventually { try await database.workers().filter(\.alive).count == 2 })
            let enqueued = Locked(0)
            // 200 runs in batches of 10, restarting the server after the first 100.
            for batch in 0..<20 {
                if batch == 10 {
                    try await offThePool { try cluster.restart() }
                    print("fault 2: PostgreSQL restarted after \(enqueued.value) runs were enqueued")
                }
                // Committed when COMMIT answers; after an error, whether it was is read back (all runs, in flight
                // and finished), so a batch is neither lost nor added twice around the restart.
                var done = false
                while !done {
                    do {
                        try await client.withConnection { connection in
                            _ = try await connection.query("BEGIN", logger: TestDatabase.logger).collect()
                            _ = try await connection.query("""
                                INSERT INTO tock.runs (job_id, trigger) SELECT id, 'sql' FROM tock.jobs, generate_series(1, 10)
                                """, logger: TestDatabase.logger).collect()
                            _ = try await connection.query("COMMIT", logger: TestDatabase.logger).collect()
                        }
                        done = true
                    } catch {
                        var total: Int?
                        while total == nil {
                            try await Task.sleep(for: .milliseconds(100))  // our own pool reconnecting
                            total = try? await count(database, "SELECT count(*)::int FROM tock.run_history")
                        }
                        done = total == enqueued.value + 10
                    }
                }
                enqueued.withLock { $0 += 10 }
                try await Task.sleep(for: .milliseconds(30))
            }
            // A claim that committed while the restart ended its connection stays on its worker until the worker's
            // heartbeat hands it back, 60 s after the claim (WorkerConfiguration.unheldRunsAfter): the bound is
            // past that, as in CrashFaultTests.
            let allDone = try await eventually(timeout: .seconds(150)) {
                (try? await count(database, "SELECT count(*)::int FROM tock.run_history WHERE status = 'succeeded'")) == 200
            }
            #expect(allDone, "workers' logs:\n\(workers.map(\.log).joined(separator: "\n---\n"))")
            #expect(try await count(database, "SELECT count(*)::int FROM tock.run_history") == 200)
            #expect(try await count(database, "SELECT count(*)::int FROM tock.run_history WHERE attempt <> 1") == 0)
            #expect(try await count(database,
                "SELECT count(*)::int FROM tock.finished_runs f WHERE f.output = f.id || E'\\n'") == 200)
            // A clean restart flushes every claim: each run's script started exactly once, as the scripts recorded
            // (a second execution would leave the run's row as if there had been one).
            let ids = try await database.client.query("SELECT id FROM tock.run_history").decode(Int64.self).all()
            let executed = executions.executionsPerRun()
            #expect(Set(executed.keys) == Set(ids), "runs whose script never started: \(Set(ids).subtracting(executed.keys).sorted())")
            #expect(executions.repeatedRuns().isEmpty, """
                runs whose script started more than once: \(executions.repeatedRuns())
                workers' logs:\n\(workers.map(\.log).joined(separator: "\n---\n"))
                """)
            for worker in workers {
                let stopRequested = ContinuousClock.now
                worker.signal(SIGTERM)
                // Nothing is in flight, so its exit is a few calls that say it stopped (2 s each at most with the
                // database away): the 30 s every other stop here is given.
                #expect(try await worker.wait() == 0, "\(worker.log)")
                print("fault 2: SIGTERM to a worker's exit after the restart: \(ContinuousClock.now - stopRequested)")
                #expect(worker.log.contains("LISTEN connection lost; reconnecting"))
            }
        }
    }

    @Test("SIGTERM a worker with runs in flight: short ones finish, the long one is handed back without using an attempt")
    func sigtermWorker() async throws {
        let directory = try makeScriptsDirectory(["scripts/sleep.sh": "#!/bin/sh\nsleep \"$1\"\necho slept \"$1\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "short", script: "sleep.sh", args: ["1"]))
            _ = try await database.createJob(JobDefinition(name: "long", script: "sleep.sh", args: ["60"]))
            let worker = try TockProcess(["worker", "--concurrency", "3", "--shutdown-grace-seconds", "3"],
                                         settings: settings, directory: directory)
            let short1 = try await database.runNow("short")
            let short2 = try await database.runNow("short")
            let long = try await database.runNow("long")
            #expect(try await eventually {
                try await count(database, "SELECT count(*)::int FROM tock.run_history WHERE status = 'running'") == 3
            })
            let guards = childProcesses(of: worker.pid, running: "guard-scripts")
            #expect(guards.count == 1, "the worker's script guard")
            worker.signal(SIGTERM)
            #expect(try await worker.wait(timeout: .seconds(20)) == 0, "\(worker.log)")
            // A worker that stops cleanly has no scripts left: its guard exits with it.
            #expect(!guards.contains(where: processRuns))
            #expect(try await database.run(short1, withOutput: false).status == "succeeded")
            #expect(try await database.run(short2, withOutput: false).status == "succeeded")
            let handedBack = try await database.run(long, withOutput: false)
            #expect(handedBack.status == "pending")
            #expect(handedBack.attempt == 1)
            #expect(try await database.workers().map(\.state) == ["stopped"])
            // Another worker picks it up.
            #expect(try await count(database, "SELECT count(*)::int FROM tock.run_history") == 3)
        }
    }

    @Test("SIGTERM a worker while PostgreSQL is down: it exits within its grace, and rescue fails over the run it could not report",
          .enabled(if: TestDatabase.cluster != nil, "needs the embedded test cluster (ops/test)"))
    func sigtermWorkerWithoutDatabase() async throws {
        let directory = try makeScriptsDirectory(["scripts/nap.sh": "#!/bin/sh\nsleep 1\necho \"attempt $TOCK_ATTEMPT\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try #require(TestDatabase.cluster)
        let settings = try await TestDatabase.create()
        try await TestDatabase.withClient(settings) { client in
            let database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            var job = JobDefinition(name: "nap", script: "nap.sh")
            job.maxAttempts = 2
            _ = try await database.createJob(job)
            let worker = try TockProcess(["worker", "--concurrency", "1", "--shutdown-grace-seconds", "3"],
                                         settings: settings, directory: directory)
            let run = try await database.runNow("nap")
            #expect(try await eventually { try await database.run(run, withOutput: false).status == "running" })

            // The script ends a second later, when its result can no longer be recorded anywhere.
            try cluster.stop()
            let stopRequested = ContinuousClock.now
            worker.signal(SIGTERM)
            let status = try await worker.wait(timeout: .seconds(60))
            let exitTime = ContinuousClock.now - stopRequested
            _ = try cluster.start()
            print("fault 3: SIGTERM with PostgreSQL down to the worker's exit: \(exitTime) (grace 3 s)")
            #expect(status == 0, "\(worker.log)")
            // Before: reports retried for 10 minutes, so systemd's SIGKILL (45 s) was what ended such a worker.
            #expect(exitTime < .seconds(15), "\(worker.log)")
            #expect(worker.log.contains("could not report the run before the worker stopped"), "\(worker.log)")

            // The result is gone with the worker; the run is not. Rescue sees the worker gone (its session ended
            // with the server) once its heartbeat is 2 s stale, and fails the attempt over to a retry.
            let recovered = try await eventually(timeout: .seconds(30)) {
                // try?: the test's own pool reconnects to the restarted server first.
                (try? await count(database, "SELECT tock.rescue(now() + interval '5 seconds')")) == 1
            }
            #expect(recovered)
            let runs = try await database.runs(job: "nap").sorted { $0.id < $1.id }
            #expect(runs.map(\.status) == ["failed", "pending"])
            #expect(runs.map(\.attempt) == [1, 2])
            #expect(runs.first?.error?.contains("was lost") == true, "\(runs.first?.error ?? "")")
        }
    }

    @Test("three schedulers over 500 jobs firing every second, one killed half-way: every fire time has exactly one run")
    func racingSchedulers() async throws {
        let seconds = Int(ProcessInfo.processInfo.environment["TOCK_FAULT_SCHEDULER_SECONDS"] ?? "30") ?? 30
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.client.query("""
                INSERT INTO tock.jobs (name, script, schedule, overlap)
                SELECT 'job' || i, 'x.sh', 'every 1s', 'allow' FROM generate_series(1, 500) i
                """).collect()
            try await EnqueueProbe.install(database.client)
            let schedulers = try (0..<3).map { _ in try TockProcess(["scheduler"], settings: settings, directory: directory) }
            try await Task.sleep(for: .seconds(seconds / 2))
            schedulers[0].signal(SIGKILL)
            try await Task.sleep(for: .seconds(seconds - seconds / 2))
            for scheduler in schedulers.dropFirst() {
                scheduler.signal(SIGTERM)
                #expect(try await scheduler.wait() == 0)
            }
            // Per job: fire times one second apart with no gap and no repeat, from the first to the last.
            let (runs, gaps, duplicates, minimum) = try #require(try await database.client.query("""
                WITH per_job AS (
                    SELECT job_id, count(*) AS n, count(DISTINCT scheduled_for) AS d,
                           round(extract(epoch FROM max(scheduled_for) - min(scheduled_for)))::int + 1 AS span
                    FROM tock.run_history WHERE trigger = 'schedule' GROUP BY job_id)
                SELECT sum(n)::int, count(*) FILTER (WHERE span <> n)::int, count(*) FILTER (WHERE d <> n)::int, min(n)::int
                FROM per_job
                """).decode((Int, Int, Int, Int).self).all().first)
            print("fault 4: \(runs) runs from 3 schedulers (one killed) over \(seconds)s; jobs with gaps: \(gaps), repeats: \(duplicates)")
            #expect(duplicates == 0)
            #expect(gaps == 0)
            // tock.runs cannot show a repeat (the unique index on job and fire time drops the second insert): the
            // probe counts what the ticks offered. A killed scheduler's tick is rolled back with its offers.
            let offers = try await EnqueueProbe.tally(database.client)
            print("fault 4: \(offers)")
            #expect(offers.repeated == 0 && offers.offered == runs, "\(offers)")
            #expect(minimum >= seconds - 3)
            #expect(try await count(database, "SELECT count(DISTINCT job_id)::int FROM tock.run_history") == 500)
        }
    }

    @Test("cancel a running script that ignores SIGTERM: it dies after the grace period")
    func cancelStubbornScript() async throws {
        let directory = try makeScriptsDirectory(["scripts/stubborn.sh": """
            #!/bin/sh
            trap 'echo got TERM' TERM
            echo $$ > "$PWD/stubborn.pid"
            while :; do sleep 0.2; done
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "stubborn", script: "stubborn.sh"))
            let worker = try TockProcess(["worker", "--kill-grace-seconds", "2"], settings: settings, directory: directory)
            let run = try await database.runNow("stubborn")
            #expect(try await eventually { !pidsWritten(to: directory + "/scripts/stubborn.pid").isEmpty })
            let pid = try #require(pidsWritten(to: directory + "/scripts/stubborn.pid").first)
            let requested = ContinuousClock.now
            #expect(try await database.cancel(run) == "cancelling")
            #expect(try await eventually(timeout: .seconds(60)) {
                try await database.run(run, withOutput: false).status == "cancelled"
            })
            let elapsed = ContinuousClock.now - requested
            print("fault 5: cancel of a script ignoring SIGTERM took \(elapsed) (grace 2s)")
            #expect(elapsed >= .seconds(2))
            #expect(elapsed < .seconds(6))
            #expect(kill(pid, 0) != 0)
            let info = try await database.run(run)
            #expect(info.output?.contains("got TERM") == true)
            #expect(info.error?.contains("cancelled") == true)
            // A pending run is cancelled at once, and an ended one cannot be cancelled again.
            try await database.setJobEnabled("stubborn", false)
            await #expect(throws: TockError.self) { _ = try await database.cancel(run) }
            worker.signal(SIGTERM)
            #expect(try await worker.wait() == 0)
            let pending = try await database.runNow("stubborn")
            #expect(try await database.cancel(pending) == "cancelled")
        }
    }

    @Test("a job that fails 3 times ends dead, its three attempts linked in the history with backoff between them")
    func deadLetter() async throws {
        let directory = try makeScriptsDirectory(["scripts/fail.sh": "#!/bin/sh\necho \"attempt $TOCK_ATTEMPT\"\nexit 7\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var job = JobDefinition(name: "flaky", script: "fail.sh")
            job.maxAttempts = 3
            job.retryBaseSeconds = 1
            _ = try await database.createJob(job)
            let worker = try TockProcess(["worker"], settings: settings, directory: directory)
            let first = try await database.runNow("flaky")
            #expect(try await eventually(timeout: .seconds(20)) {
                try await database.runs(job: "flaky", status: .dead).count == 1
            })
            let runs = try await database.runs(job: "flaky").sorted { $0.id < $1.id }
            try #require(runs.count == 3 && runs.allSatisfy { $0.startedAt != nil && $0.finishedAt != nil })
            #expect(runs.map(\.status) == ["failed", "failed", "dead"])
            #expect(runs.map(\.attempt) == [1, 2, 3])
            #expect(runs.dropFirst().allSatisfy { $0.firstRunId == first && $0.trigger == "retry" })
            #expect(runs.allSatisfy { $0.exitCode == 7 })
            #expect(runs.last?.error == "exited with status 7 (attempt 3 of 3: no attempts left)")
            // Backoff: about 1 s (±25%) before attempt 2, about 2 s before attempt 3.
            let waits = zip(runs, runs.dropFirst()).map { previous, next in
                next.startedAt!.timeIntervalSince(previous.finishedAt!)
            }
            print("fault 6: waits between attempts: \(waits.map { String(format: "%.2fs", $0) })")
            #expect(waits[0] >= 0.7 && waits[0] < 3)
            #expect(waits[1] >= 1.45 && waits[1] < 5)
            // The dead letter can be retried by hand.
            let again = try await database.retry(runs.last!.id)
            #expect(try await database.run(again, withOutput: false).attempt == 4)
            worker.signal(SIGTERM)
            #expect(try await worker.wait() == 0)
        }
    }
}

/// Whether `pid` is a process that has not exited (a zombie waiting for its parent to reap it has).
func processRuns(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}

/// The processes whose parent is `parent` and whose command line contains `text`.
func childProcesses(of parent: Int32, running text: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let parentField = stat[stat.index(after: close)...].split(separator: " ").dropFirst().first,
              Int32(parentField) == parent,
              let commandLine = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: commandLine, as: UTF8.self).contains(text)
    }
}
