import Foundation
import PostgresNIO
import Testing
import TockCluster
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

/// PostgreSQL going away under running processes: a crash, and an outage long enough to make live workers look
/// dead. In FaultTests (an extension, so its `.serialized` holds): each restarts the server.
extension FaultTests {
    @Test("PostgreSQL crashes (pg_ctl stop -m immediate) while 200 runs flow: none vanishes, each ends succeeded; the API answers 503 while it is down",
          .enabled(if: TestDatabase.cluster != nil, "needs the embedded test cluster (ops/test)"))
    func databaseCrash() async throws {
        let executions = ExecutionLog("crash")
        defer { executions.remove() }
        let directory = try makeScriptsDirectory(["scripts/quick.sh": "#!/bin/sh\n\(executions.record)\necho \"$TOCK_RUN_ID\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try #require(TestDatabase.cluster)
        let settings = try await TestDatabase.create()
        try await TestDatabase.withClient(settings) { client in
            let database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            // One job per batch of 10 runs: a batch whose INSERT's answer the crash took is found by its job after the
            // restart, rather than enqueued again.
            _ = try await client.query("""
                INSERT INTO tock.jobs (name, script, overlap) SELECT 'batch' || i, 'quick.sh', 'allow' FROM generate_series(0, 19) i
                """).collect()
            let workers = try (0..<2).map { _ in
                try TockProcess(["worker", "--concurrency", "4"], settings: settings, directory: directory)
            }
            // As in production: a scheduler's rescue would fail over the runs of any worker it took for dead.
            let scheduler = try TockProcess(["scheduler"], settings: settings, directory: directory)
            let port = try TestPorts.free()
            let api = try TockProcess(["api", "--api-port", "\(port)"], settings: settings, directory: directory)
            let processes = workers + [scheduler, api]
            defer { processes.forEach { $0.signal(SIGKILL) } }
            let jobs = { () async throws -> String in
                // Longer than the API's own 10 s call timeout, which may be what answers 503 while PostgreSQL is down.
                try await HTTPStream.exchange(port: port, "GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                                              timeout: .seconds(30))
            }
            #expect(try await eventually { try await database.workers().filter(\.alive).count == 2 })
            #expect(try await eventually { (try? await jobs())?.hasPrefix("HTTP/1.1 200") == true }, "\(api.log)")

            var unavailable = ""
            for batch in 0..<20 {
                if batch == 10 {
                    // Runs are being claimed, run and finished: the crash lands among them.
                    try await offThePool { try cluster.stop(mode: "immediate") }
                    unavailable = try await jobs()
                    _ = try await offThePool { try cluster.start() }
                    print("fault 9: PostgreSQL crashed and started again after 100 runs were enqueued")
                }
                var enqueued = false
                while !enqueued {
                    do {
                        let present = try await client.query(
                            "SELECT count(*)::int FROM tock.run_history r JOIN tock.jobs j ON j.id = r.job_id WHERE j.name = \("batch\(batch)")")
                            .decode(Int.self).all().first ?? 0
                        if present == 0 {
                            _ = try await client.query("""
                                INSERT INTO tock.runs (job_id, trigger)
                                SELECT id, 'sql' FROM tock.jobs, generate_series(1, 10) WHERE name = \("batch\(batch)")
                                """).collect()
                        }
                        enqueued = true
                    } catch {
                        try await Task.sleep(for: .milliseconds(100))  // our own pool reconnecting
                    }
                }
                try await Task.sleep(for: .milliseconds(30))  // the flow's pace, not a wait for anything
            }
            #expect(unavailable.hasPrefix("HTTP/1.1 503"), "while PostgreSQL was down: \(unavailable)")
            #expect(unavailable.contains("\"error\""), "the error's JSON shape: \(unavailable)")

            // A claim that committed while the crash took its answer stays on its worker, unstarted, until that
            // worker's heartbeat hands it back, 60 s after the claim (WorkerConfiguration.unheldRunsAfter): the
            // bound is past that.
            let allDone = try await eventually(timeout: .seconds(150)) {
                (try? await count(database, "SELECT count(*)::int FROM tock.run_history WHERE status = 'succeeded'")) == 200
            }
            let statuses = try await client.query("SELECT status || ' ' || count(*) FROM tock.run_history GROUP BY status")
                .decode(String.self).all()
            #expect(allDone, "runs by status: \(statuses)\nworkers' logs:\n\(workers.map(\.log).joined(separator: "\n---\n"))")
            // Every batch once, each of its runs a first attempt: none vanished, none was failed over.
            #expect(try await count(database, "SELECT count(*)::int FROM tock.run_history") == 200)
            #expect(try await count(database, """
                SELECT count(*)::int FROM (SELECT job_id FROM tock.run_history GROUP BY job_id HAVING count(*) = 10) b
                """) == 20)
            #expect(try await count(database, "SELECT count(*)::int FROM tock.run_history WHERE attempt <> 1") == 0)
            #expect(try await database.workers().map(\.state) == ["running", "running"])
            // Each run's script started at least once; a claim the crash undid (claims do not wait for the WAL
            // flush) starts one twice, as README says it may.
            let ids = try await client.query("SELECT id FROM tock.run_history").decode(Int64.self).all()
            let executed = executions.executionsPerRun()
            #expect(Set(ids).isSubset(of: executed.keys), "never started: \(Set(ids).subtracting(executed.keys).sorted())")
            print("fault 9: runs whose script started twice after the crash: \(executions.repeatedRuns().count)")
            #expect(try await jobs().hasPrefix("HTTP/1.1 200"))
            for process in processes {
                process.signal(SIGTERM)
                #expect(try await process.wait() == 0, "\(process.log)")
            }
        }
    }

    @Test("PostgreSQL down for 3 s with a scheduler running: live workers are not taken for dead, their runs finish as the same attempt",
          .enabled(if: TestDatabase.cluster != nil, "needs the embedded test cluster (ops/test)"))
    func liveWorkersSurviveRestart() async throws {
        let executions = ExecutionLog("outage")
        defer { executions.remove() }
        let release = NSTemporaryDirectory() + "tock-release-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: release) }
        // Each run holds its worker until the test releases it.
        let directory = try makeScriptsDirectory(["scripts/hold.sh": """
            #!/bin/sh
            \(executions.record)
            while [ ! -e \(release) ]; do sleep 0.05; done
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try #require(TestDatabase.cluster)
        let settings = try await TestDatabase.create()
        try await TestDatabase.withClient(settings) { client in
            let database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            var job = JobDefinition(name: "hold", script: "hold.sh")
            job.overlap = "allow"
            _ = try await database.createJob(job)
            let workers = try (0..<2).map { _ in
                try TockProcess(["worker", "--concurrency", "1"], settings: settings, directory: directory)
            }
            let scheduler = try TockProcess(["scheduler"], settings: settings, directory: directory)
            let processes = workers + [scheduler]
            defer { processes.forEach { $0.signal(SIGKILL) } }
            let runs = [try await database.runNow("hold"), try await database.runNow("hold")]
            #expect(try await eventually { executions.entries().count == 2 }, "\(workers.map(\.log))")
            let holders = try await database.runs(job: "hold").compactMap(\.workerId)
            #expect(Set(holders).count == 2, "one run on each worker")

            try await offThePool { try cluster.stop() }
            // Down for longer than the 2 s after which tock.rescue takes a worker whose session lock is gone for dead:
            // the outage's length is what this test is about, not a wait for something to happen.
            try await Task.sleep(for: .seconds(3))
            _ = try await offThePool { try cluster.start() }
            // At once, before the workers are back (they reconnect with backoff): what a scheduler's first rescue
            // after the restart does. Their heartbeats are more than 2 s old and their locks are gone; counted from
            // the server's start, they are not.
            let rescued = try await TestDatabase.withClient(settings, maximumConnections: 1) { fresh in
                try await fresh.query("SELECT tock.rescue()").decode(Int.self).all().first
            }
            #expect(rescued == 0, "the first rescue after the restart failed over \(rescued ?? -1) runs of live workers")
            // Both workers back: heartbeating and holding their session locks again.
            #expect(try await eventually {
                (try? await count(database, """
                    SELECT count(*)::int FROM tock.workers
                    WHERE state = 'running' AND last_heartbeat_at > pg_postmaster_start_time() AND tock.worker_session_alive(id)
                    """)) == 2
            }, "\(workers.map(\.log))")
            // A few of the scheduler's rescues (one a second) have run by now: the runs are still on their workers.
            let afterOutage = try await database.runs(job: "hold")
            #expect(afterOutage.map(\.status) == ["running", "running"], "\(afterOutage.map { "\($0.id) \($0.status) \($0.error ?? "")" })")

            #expect(FileManager.default.createFile(atPath: release, contents: nil))
            #expect(try await eventually {
                try await database.runs(job: "hold").allSatisfy { $0.status == "succeeded" }
            }, "\(workers.map(\.log))")
            let ended = try await database.runs(job: "hold")
            #expect(ended.count == 2 && ended.allSatisfy { $0.attempt == 1 } && Set(ended.map(\.id)) == Set(runs))
            #expect(Set(ended.compactMap(\.workerId)) == Set(holders), "each finished on the worker that started it")
            #expect(executions.repeatedRuns().isEmpty && executions.entries().count == 2, "\(executions.entries())")
            #expect(try await database.workers().map(\.state) == ["running", "running"])
            for process in processes {
                process.signal(SIGTERM)
                #expect(try await process.wait() == 0, "\(process.log)")
            }
        }
    }
}
