import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// What README says a worker does with a run, each shown with a real `tock worker` process and read back from the
/// database: the script's environment, the output cap, timeouts and their retry, the retry cap, and a cancel that
/// arrives while the worker is not listening.
@Suite("what README promises about runs, through a real tock worker")
struct ClaimedBehaviourTests {
    @Test("a script sees the documented environment and nothing else of its worker's: no DATABASE_URL, PG* or tokens")
    func scriptEnvironment() async throws {
        let directory = try makeScriptsDirectory(["scripts/env.sh": "#!/bin/sh\nenv\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            // Besides DATABASE_URL (TockProcess passes it), what a deployment's environment may hold.
            let secrets = ["PGPASSWORD": "pg-password-of-the-worker", "PGUSER": "pg-user-of-the-worker",
                           "TOCK_API_TOKENS": "api-token-of-the-deployment:admin", "AWS_SECRET_ACCESS_KEY": "aws-secret-of-the-host"]
            let worker = try TockProcess(["worker"], settings: settings, directory: directory,
                                         environment: secrets.merging(["LANG": "C.UTF-8", "HOME": "/home/tock-test"]) { $1 })
            defer { worker.signal(SIGKILL) }
            _ = try await database.createJob(JobDefinition(name: "env", script: "env.sh"))
            let run = try await database.runNow("env")
            #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" }, "\(worker.log)")
            let output = try #require(try await database.run(run).output)
            let variables = Dictionary(output.split(separator: "\n").compactMap { line -> (String, String)? in
                guard let equals = line.firstIndex(of: "=") else { return nil }
                return (String(line[..<equals]), String(line[line.index(after: equals)...]))
            }) { first, _ in first }
            // README: PATH, HOME, USER, LANG, TZ from the worker (and LOGNAME, LC_ALL, TMPDIR when it has them), the
            // run's TOCK_* variables; the shell adds its own PWD, SHLVL and _.
            let documented: Set<String> = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
                                           "TOCK_RUN_ID", "TOCK_JOB", "TOCK_ATTEMPT", "TOCK_TRIGGER", "TOCK_SCRIPT",
                                           "TOCK_SCHEDULED_FOR", "PWD", "OLDPWD", "SHLVL", "_"]
            #expect(Set(variables.keys).subtracting(documented).isEmpty,
                    "undocumented variables: \(Set(variables.keys).subtracting(documented).sorted())")
            #expect(variables["TOCK_RUN_ID"] == String(run) && variables["TOCK_JOB"] == "env")
            #expect(variables["TOCK_ATTEMPT"] == "1" && variables["TOCK_TRIGGER"] == "manual")
            #expect(variables["LANG"] == "C.UTF-8" && variables["HOME"] == "/home/tock-test" && variables["TZ"] == "UTC")
            for secret in ["DATABASE_URL", settings.url()] + Array(secrets.values) + [settings.password ?? ""].filter({ !$0.isEmpty }) {
                #expect(!output.contains(secret), "the script saw \(secret)")
            }
        }
    }

    @Test("tock worker --output-cap keeps the last bytes of a run's output in the database, with the total count")
    func outputCapThroughTheWorker() async throws {
        let directory = try makeScriptsDirectory(["scripts/chatty.sh": "#!/bin/sh\nseq 1 100000\necho last line\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try TockProcess(["worker", "--output-cap", "1000"], settings: settings, directory: directory)
            defer { worker.signal(SIGKILL) }
            _ = try await database.createJob(JobDefinition(name: "chatty", script: "chatty.sh"))
            let run = try await database.runNow("chatty")
            #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" }, "\(worker.log)")
            let info = try await database.run(run)
            let output = try #require(info.output)
            // Every line of `seq 1 100000` (its digits and a newline each), then "last line\n".
            let total = (1...100_000).reduce(0) { $0 + String($1).utf8.count + 1 } + "last line\n".utf8.count
            #expect(output.utf8.count == 1000, "\(output.utf8.count) bytes kept")
            #expect(output.hasSuffix("99999\n100000\nlast line\n"))
            #expect(info.outputBytes == Int64(total))
            #expect(info.outputTruncated == true)
        }
    }

    @Test("a run past its job's timeout ends timed_out, its script stopped, and is retried after the backoff")
    func timeoutThenRetry() async throws {
        let pids = NSTemporaryDirectory() + "tock-timeout-pids-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: pids) }
        // Attempt 1 outlives its 1 s timeout (with a child of its own); attempt 2 ends at once.
        let directory = try makeScriptsDirectory(["scripts/slow.sh": """
            #!/bin/sh
            if [ "$TOCK_ATTEMPT" = 1 ]; then sleep 300 & echo "$$ $!" > \(pids); wait; fi
            echo "attempt $TOCK_ATTEMPT"
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try TockProcess(["worker", "--kill-grace-seconds", "1"], settings: settings, directory: directory)
            defer { worker.signal(SIGKILL) }
            var job = JobDefinition(name: "slow", script: "slow.sh")
            job.timeoutSeconds = 1
            job.maxAttempts = 2
            job.retryBaseSeconds = 1
            _ = try await database.createJob(job)
            let first = try await database.runNow("slow")
            #expect(try await eventually { pidsWritten(to: pids).count == 2 }, "\(worker.log)")
            let scriptPids = pidsWritten(to: pids)
            #expect(try await eventually {
                try await database.runs(job: "slow").contains { $0.attempt == 2 && $0.status == "succeeded" }
            }, "\(worker.log)")
            let runs = try await database.runs(job: "slow").sorted { $0.id < $1.id }
            #expect(runs.map(\.status) == ["timed_out", "succeeded"])
            #expect(runs.map(\.attempt) == [1, 2])
            #expect(runs.last?.firstRunId == first && runs.last?.trigger == "retry")
            let timedOut = try #require(runs.first)
            #expect(timedOut.error?.contains("timed out after 1s") == true, "\(timedOut.error ?? "")")
            // From the database's times: the script ran its second, then was stopped (SIGTERM, which it obeys; the
            // 1 s kill grace is the most it could add). The retry waited out the 1 s backoff (±25%).
            let ran = try #require(timedOut.finishedAt).timeIntervalSince(try #require(timedOut.startedAt))
            #expect(ran >= 1 && ran < 5, "the timed-out attempt ran \(ran) s")
            let retry = try #require(runs.last)
            let backoff = retry.runAfter.timeIntervalSince(try #require(timedOut.finishedAt))
            #expect(backoff >= 0.75 && backoff <= 1.25, "backoff \(backoff) s")
            #expect(try await database.run(retry.id).output == "attempt 2\n")
            #expect(!scriptPids.contains(where: processIsRunning), "the timed-out script or its child still runs")
        }
    }

    @Test("--retry-cap bounds the doubling backoff: base 1 s, cap 2 s waits 1, 2 and 2 s (±25%), not 1, 2 and 4")
    func retryCap() async throws {
        let directory = try makeScriptsDirectory(["scripts/fail.sh": "#!/bin/sh\necho \"attempt $TOCK_ATTEMPT\"\nexit 3\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let add = try await runTock(["job", "add", "capped", "--script", "fail.sh", "--max-attempts", "4",
                                         "--retry-base", "1s", "--retry-cap", "2s"], settings: settings, directory: directory)
            #expect(add.status == 0, "\(add.stderr)")
            let worker = try TockProcess(["worker"], settings: settings, directory: directory)
            defer { worker.signal(SIGKILL) }
            _ = try await database.runNow("capped")
            // About 5 s of backoff in all; each retry is slept for (the sweep is an hour away).
            #expect(try await eventually { try await database.runs(job: "capped", status: .dead).count == 1 }, "\(worker.log)")
            let runs = try await database.runs(job: "capped").sorted { $0.id < $1.id }
            #expect(runs.map(\.attempt) == [1, 2, 3, 4])
            // Each retry is enqueued by the failed attempt's finish, and held until its backoff is over: run_after
            // less enqueued_at is the backoff itself, on the database's clock.
            let backoffs = runs.dropFirst().map { $0.runAfter.timeIntervalSince($0.enqueuedAt) }
            print("retryCap: backoffs \(backoffs.map { String(format: "%.2fs", $0) })")
            for (backoff, expected) in zip(backoffs, [1.0, 2.0, 2.0]) {
                #expect(backoff >= expected * 0.75 && backoff <= expected * 1.25, "backoffs \(backoffs)")
            }
            for (failed, retry) in zip(runs, runs.dropFirst()) {
                #expect(retry.enqueuedAt == failed.finishedAt, "the retry is enqueued by the finish")
            }
        }
    }

    @Test("a cancel sent while the worker's LISTEN connection is down is carried out once it listens again")
    func cancelAfterReconnect() async throws {
        let pidFile = NSTemporaryDirectory() + "tock-cancel-pid-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let directory = try makeScriptsDirectory(["scripts/long.sh": "#!/bin/sh\necho $$ > \(pidFile)\nexec sleep 300\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            // The window's own calls go through one connection opened before it: the test's pool may need a new one
            // there (seen under load: "database is not currently accepting connections").
            try await TestDatabase.withClient(settings, maximumConnections: 1) { inside in
                _ = try await inside.query("SELECT 1").collect()
                try await TestDatabase.withClient(settings.with(database: "postgres"), maximumConnections: 1) { admin in
                    let allow = { (allowed: Bool) async throws in
                        _ = try await admin.query(PostgresQuery(unsafeSQL:
                            "ALTER DATABASE \(settings.database) ALLOW_CONNECTIONS \(allowed)")).collect()
                    }
                    let worker = try TockProcess(["worker", "--kill-grace-seconds", "1"], settings: settings, directory: directory)
                    defer { worker.signal(SIGKILL) }
                    _ = try await database.createJob(JobDefinition(name: "long", script: "long.sh"))
                    let run = try await database.runNow("long")
                    #expect(try await eventually { !pidsWritten(to: pidFile).isEmpty }, "\(worker.log)")
                    let script = try #require(pidsWritten(to: pidFile).first)
                    let workerId = try #require(try await database.run(run, withOutput: false).workerId)
                    // The backend of the worker's LISTEN connection (it took the worker's session lock there).
                    let listener = try #require(try await database.client.query(
                        "SELECT session_pid FROM tock.workers WHERE id = \(workerId)").decode(Int32?.self).all().first ?? nil)

                    // No new connection to the database may open (the test's and the worker's pools keep theirs), and
                    // the listener's is ended: the worker cannot LISTEN again until connections are allowed.
                    try await allow(false)
                    // Whatever happens in the window, connections are allowed again after it: a call that waits for a new
                    // connection meanwhile would wait forever, so the window has a deadline of its own.
                    let window: Result<Void, any Error>
                    do {
                        window = .success(try await awaitAbandoning(timeout: .seconds(60), timedOut: {
                            TockError(.failed, "the window without new connections did not end within 60 s")
                        }) {
                            _ = try await admin.query("SELECT pg_terminate_backend(\(listener))").collect()
                            #expect(try await eventually {
                                try await admin.query("SELECT count(*)::int FROM pg_stat_activity WHERE pid = \(listener)")
                                    .decode(Int.self).all().first == 0
                            })
                            // Its NOTIFY tock_cancel goes to no listener of the worker's.
                            #expect(try await inside.query("SELECT tock.cancel(\(run))").decode(String.self).all() == ["cancelling"])
                            let lockHeld = try await inside.query("SELECT tock.worker_session_alive(\(workerId))")
                                .decode(Bool.self).all().first
                            #expect(lockHeld == false, "the worker listened again before the cancel: the test proves nothing")
                            #expect(processIsRunning(script))
                        })
                    } catch {
                        window = .failure(error)
                    }
                    try await allow(true)
                    try window.get()
                    // Reconnected (backoff up to 5 s), it reads the cancel requests it may have missed and stops the script.
                    #expect(try await eventually {
                        try await database.run(run, withOutput: false).status == "cancelled"
                    }, "\(worker.log)")
                    #expect(try await eventually(timeout: .seconds(5)) { !processIsRunning(script) })
                    #expect(try await database.run(run, withOutput: false).error?.contains("cancelled") == true)
                }
            }
        }
    }
}
