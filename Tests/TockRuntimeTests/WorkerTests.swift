import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

/// Runs services in a ServiceGroup for the duration of `body`, then shuts them down gracefully.
func withServices<T: Sendable>(_ services: [any Service], _ body: @Sendable () async throws -> T) async throws -> T {
    let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: TestDatabase.logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let value = try await body()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return value
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

@Suite("worker and scheduler")
struct WorkerTests {
    @Test("with the safety sweep an hour away, a run-now wakes an idle worker through NOTIFY: claimed in seconds, not an hour")
    func notifyWakesIdleWorker() async throws {
        let directory = try makeScriptsDirectory(["hello.sh": "#!/bin/sh\necho \"hello $1 from $TOCK_JOB\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            let signals = SignalLog(worker.testSignals.subscribe())
            _ = try await database.createJob(JobDefinition(name: "hello", script: "hello.sh", args: ["world"]))
            try await withServices([worker]) { () async throws -> Void in
                // Listening, and told to claim what came before: a run enqueued after that reaches the worker only
                // through NOTIFY (or the sweep, an hour away).
                #expect(await signals.next(.listening), "the worker never listened")
                let run = try await database.runNow("hello")
                #expect(await signals.claimed(taking: true) == [run])
                #expect(await signals.reported(run) == .succeeded)
                #expect(try await database.run(run, withOutput: false).status == "succeeded")
                let info = try await database.run(run)
                // From the run-now's commit to the claim, both on the database's clock: only NOTIFY could have woken the
                // worker this soon (the sweep is an hour away). How soon it does is a benchmark's figure (`tock-bench
                // latency`: milliseconds), not this test's, which must hold on a loaded machine too.
                let claimedAfter = try #require(info.startedAt).timeIntervalSince(info.enqueuedAt)
                print("notifyWakesIdleWorker: run-now to claimed \(String(format: "%.1f", claimedAfter * 1000)) ms")
                #expect(claimedAfter < 30, "run-now to claimed took \(claimedAfter) s")
                #expect(info.output == "hello world from hello\n")
                #expect(info.exitCode == 0)
                #expect(info.trigger == "manual")
            }
            let workers = try await database.workers()
            #expect(workers.map(\.state) == ["stopped"])
            #expect(workers.first?.runsProcessed == 1)
        }
    }

    @Test("overlap 'queue': each ended run wakes the worker for the job's next one, with the sweep an hour away")
    func queuedRunsFollowEachOther() async throws {
        let directory = try makeScriptsDirectory(["step.sh": "#!/bin/sh\nsleep 0.2\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            configuration.concurrency = 4
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            var job = JobDefinition(name: "serial", script: "step.sh")
            job.overlap = "queue"
            _ = try await database.createJob(job)
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.workers().first?.alive == true })
                var runs: [Int64] = []
                for _ in 0..<3 { runs.append(try await database.runNow("serial")) }
                // The worker has free slots but may not claim run 2 while run 1 runs; only the NOTIFY sent when
                // run 1 ends (the worker no longer claims after every run just in case) brings it back.
                #expect(try await eventually(timeout: .seconds(30), interval: .milliseconds(20)) {
                    var done = true
                    for run in runs where try await database.run(run, withOutput: false).status != "succeeded" { done = false }
                    return done
                })
                var ran: [RunInfo] = []
                for run in runs { ran.append(try await database.run(run, withOutput: false)) }
                for (earlier, later) in zip(ran, ran.dropFirst()) {
                    let (ended, started) = (try #require(earlier.finishedAt), try #require(later.startedAt))
                    #expect(started >= ended, "one run of the job at a time")
                    #expect(started.timeIntervalSince(ended) < 20, "the next run waited \(started.timeIntervalSince(ended)) s")
                }
            }
        }
    }

    @Test("a script outside the sandbox is refused at run time and the refusal is recorded on the run")
    func sandboxRefusalRecorded() async throws {
        let directory = try makeScriptsDirectory(["ok.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createSymbolicLink(atPath: directory + "/sneaky.sh", withDestinationPath: "/usr/bin/id")
        try await TestDatabase.withFresh { database, settings in
            let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            _ = try await database.createJob(JobDefinition(name: "sneaky", script: "sneaky.sh"))
            let run = try await database.runNow("sneaky")
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "failed" })
            }
            let info = try await database.run(run)
            #expect(info.error?.contains("is outside the scripts directory") == true, "\(info.error ?? "")")
            #expect(info.output == "")
        }
    }

    @Test("no script name has special meaning: ':noop' runs like any other name, and fails when it is not a file")
    func noScriptNameIsSpecial() async throws {
        let directory = try makeScriptsDirectory(["ok.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            _ = try await database.createJob(JobDefinition(name: "noop", script: ":noop"))
            let run = try await database.runNow("noop")
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "failed" })
            }
            let info = try await database.run(run)
            #expect(info.error?.contains(":noop") == true, "\(info.error ?? "")")
        }
    }

    @Test("the scheduler turns an interval schedule into runs that a worker completes, each fire time once, and shutdown is clean")
    func schedulerAndWorker() async throws {
        let executions = ExecutionLog("scheduled")
        defer { executions.remove() }
        let directory = try makeScriptsDirectory(["tick.sh": "#!/bin/sh\n\(executions.record)\necho \"$TOCK_TRIGGER $TOCK_SCHEDULED_FOR\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            try await EnqueueProbe.install(database.client)
            let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            let scheduler = Scheduler(database: database, settings: settings, sweepInterval: TestSweep.interval, logger: TestDatabase.logger)
            let schedulerSignals = SignalLog(scheduler.testSignals.subscribe())
            let workerSignals = SignalLog(worker.testSignals.subscribe())
            try await withServices([scheduler, worker]) { () async throws -> Void in
                // Each listens, and has been told to plan (claim) with what came before.
                #expect(await schedulerSignals.next(.listening), "the scheduler listens")
                #expect(await workerSignals.next(.listening), "the worker listens")
                // Created while the scheduler sleeps (nothing was due; its sweep is an hour away): only the NOTIFY on
                // tock_jobs makes it re-plan.
                _ = try await database.createJob(JobDefinition(name: "every-second", script: "tick.sh", schedule: "every 1s"))
                let ranTwice = try await eventually(timeout: .seconds(60)) {
                    try await database.runs(job: "every-second", status: .succeeded).count >= 2
                }
                // On failure, the runs tell where it stalled.
                let seen = try await database.runs(job: "every-second").map {
                    "\($0.id) \($0.trigger) \($0.status) after \($0.runAfter) started \($0.startedAt.map { "\($0)" } ?? "-") error \($0.error ?? "-")"
                }
                #expect(ranTwice, "runs of every-second, newest first: \(seen)")
            }
            // A tick the shutdown stopped waiting for can still commit on the server (its statement was sent): read
            // the runs once the offers have stayed the same for half a second (seen once on two busy cores: 3
            // offered, 2 read a moment before).
            var offered = try await EnqueueProbe.tally(database.client).offered
            while true {
                try await Task.sleep(for: .milliseconds(500))
                let now = try await EnqueueProbe.tally(database.client).offered
                if now == offered { break }
                offered = now
            }
            let runs = try await database.runs(job: "every-second")
            let scheduledFor = runs.compactMap(\.scheduledFor)
            #expect(Set(scheduledFor).count == scheduledFor.count, "a fire time ran twice")
            // What tock.runs cannot show (its unique index drops a second enqueue of a fire time, and a second
            // execution of a run overwrites the first): no fire time was offered twice, no script started twice.
            let offers = try await EnqueueProbe.tally(database.client)
            #expect(offers.repeated == 0 && offers.offered == scheduledFor.count, "\(offers)")
            let ran = executions.entries()
            #expect(executions.repeatedRuns().isEmpty, "runs whose script started more than once: \(executions.repeatedRuns())")
            #expect(Dictionary(grouping: ran, by: \.scheduledFor).allSatisfy { $0.value.count == 1 }, "a fire time's script started twice: \(ran)")
            #expect(ran.count == runs.filter { $0.status == "succeeded" }.count, "\(ran) against \(runs.map(\.status))")
            let first = try #require(runs.last(where: { $0.status == "succeeded" }))
            #expect(try await database.run(first.id).output?.hasPrefix("schedule 20") == true)
        }
    }

    @Test("a worker stopping gracefully hands back a run its script could not finish in the grace period")
    func shutdownHandsBack() async throws {
        let directory = try makeScriptsDirectory(["long.sh": "#!/bin/sh\necho started\nsleep 30\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            configuration.shutdownGrace = .milliseconds(300)
            configuration.killGraceSeconds = 1
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            _ = try await database.createJob(JobDefinition(name: "long", script: "long.sh"))
            let run = try await database.runNow("long")
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "running" })
            }
            let info = try await database.run(run, withOutput: false)
            #expect(info.status == "pending")
            #expect(info.attempt == 1)
            #expect(info.workerId == nil)
        }
    }

    @Test("a claim whose answer the worker never got: its heartbeat hands the run back, and the worker then runs it")
    func lostClaimAnswerIsHandedBack() async throws {
        let directory = try makeScriptsDirectory(["hello.sh": "#!/bin/sh\necho hello\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            // Heartbeats come when the test moves the clock, so the margin a claim needs against them (the answer of
            // a claim sent after the heartbeat's look) is not needed: the run is handed back at the first beat.
            configuration.unheldRunsAfter = .zero
            let clock = ManualClock(), heartbeatInterval = configuration.heartbeatInterval
            let worker = try Worker(database: database, settings: settings, configuration: configuration, clock: clock,
                                    logger: TestDatabase.logger)
            let signals = SignalLog(worker.testSignals.subscribe())
            _ = try await database.createJob(JobDefinition(name: "hello", script: "hello.sh"))
            try await withServices([worker]) { () async throws -> Void in
                // Registered (its id known here before its first claim), listening, and idle.
                #expect(await signals.next(.listening))
                #expect(await signals.claimed() != nil)
                #expect(worker.id != 0)
                #expect(try await database.workers().first?.alive == true)
                // The run is enqueued and claimed for this worker in one transaction, as if by a claim of its own
                // whose answer was lost: the worker never hears of it (the NOTIFY comes once it is running already).
                // Checked inside: a heartbeat may hand it back at once.
                _ = try await database.client.fetch("""
                    DO $$ BEGIN
                        PERFORM tock.run_now('hello');
                        IF (SELECT count(*) FROM tock.claim_runs(\(unescaped: String(worker.id)), 1)) <> 1 THEN
                            RAISE EXCEPTION 'the claim took nothing';
                        END IF;
                    END $$
                    """, logger: database.logger)
                let run = try #require(try await database.runs(job: "hello").first)
                #expect(try await database.run(run.id, withOutput: false).status == "running")
                // The next heartbeat that knows what the worker holds (not one during a claim, which says nothing)
                // hands it back; the NOTIFY of that wakes the worker to claim it.
                var beat: (knewHeldRuns: Bool, held: [Int64])?
                var beats = 0
                repeat {
                    clock.advance(by: heartbeatInterval)
                    beat = await signals.heartbeat(within: .seconds(20))
                    beats += 1
                } while beat?.knewHeldRuns == false && beats < 20
                #expect(beat?.held == [], "the worker does not know it holds the run")
                // The worker's timers run on the manual clock: a claim that met the handed-back run before its
                // run_after (the heartbeat's time) sleeps until then, as any claim of a run not yet due does. Time moves
                // on while the test waits, as it would, in steps that never reach the safety sweep (an hour), so a
                // lost NOTIFY still fails here.
                var claimed: [Int64]?
                for _ in 0..<200 where claimed == nil {
                    claimed = await signals.claimed(taking: true, within: .milliseconds(100))
                    if claimed == nil { clock.advance(by: .milliseconds(100)) }
                }
                let status = try await database.run(run.id, withOutput: false).status
                #expect(claimed == [run.id], "run \(run.id) is \(status); the worker's signals: \(signals.all)")
                #expect(await signals.reported(run.id, within: .seconds(20)) == .succeeded)
                #expect(try await database.run(run.id, withOutput: false).status == "succeeded")
                let finished = try await database.run(run.id)
                #expect(finished.attempt == 1)
                #expect(finished.output == "hello\n")
                #expect(try await database.runs(job: "hello").count == 1)
            }
        }
    }

    @Test("a busy worker's heartbeats never hand back a run it holds: running, or ended and being reported")
    func heartbeatKeepsHeldRuns() async throws {
        let log = NSTemporaryDirectory() + "tock-held-\(getpid()).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let directory = try makeScriptsDirectory(["slow.sh": "#!/bin/sh\necho \"$TOCK_RUN_ID\" >> \(log)\nsleep 4\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            configuration.concurrency = 3
            // Far below a script's 4 s: anything the heartbeat wrongly left out of what the worker holds would be
            // handed back and run twice. It is also how long a heartbeat may take to reach the database after a
            // claim it did not know of yet (60 s in production): seconds, not milliseconds, on a loaded machine.
            configuration.unheldRunsAfter = .seconds(2)
            configuration.heartbeatInterval = .milliseconds(200)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            _ = try await database.createJob(JobDefinition(name: "slow", script: "slow.sh"))
            try await withServices([worker]) { () async throws -> Void in
                for _ in 0..<9 { _ = try await database.runNow("slow") }
                #expect(try await eventually(timeout: .seconds(90)) {
                    try await database.runs(job: "slow").allSatisfy { $0.status == "succeeded" }
                })
            }
            let runs = try await database.runs(job: "slow")
            #expect(runs.count == 9)
            #expect(runs.allSatisfy { $0.attempt == 1 })
            let started = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            #expect(started.count == 9, "each run's script should start once: \(started)")
            #expect(Set(started).count == 9)
        }
    }

    @Test("a script reading its worker's /proc environ and command line finds no credentials")
    func workerSecretsOutOfReach() async throws {
        // The worker is passed the URL both ways a deployment does: DATABASE_URL and --database-url.
        let directory = try makeScriptsDirectory(["scripts/peek.sh": """
            #!/bin/sh
            for pid in "$PPID" "$1"; do
                echo "== $pid environ"; tr '\\0' '\\n' < /proc/$pid/environ 2>&1
                echo "== $pid cmdline"; tr '\\0' ' ' < /proc/$pid/cmdline 2>&1; echo
            done
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try TockProcess(["worker", "--database-url", settings.url()], settings: settings, directory: directory,
                                         environment: ["PGPASSWORD": "pg-password-in-the-environment",
                                                       "TOCK_API_TOKENS": "secret-token-of-the-api"])
            _ = try await database.createJob(JobDefinition(name: "peek", script: "peek.sh", args: [String(worker.pid)]))
            let run = try await database.runNow("peek")
            #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" }, "\(worker.log)")
            let output = try #require(try await database.run(run).output)
            // It did read them (as root it may): what it read holds nothing secret.
            #expect(output.contains("TOCK_LOG_LEVEL=info") && output.contains("worker --database-url"), "\(output)")
            for secret in ["DATABASE_URL", settings.url(), "pg-password-in-the-environment", "secret-token-of-the-api"]
                + [settings.password].compactMap({ $0 }).filter({ !$0.isEmpty }) {
                #expect(!output.contains(secret), "the script read \(secret): \(output)")
            }
            worker.signal(SIGTERM)
            #expect(try await worker.wait() == 0)
        }
    }

    @Test("tock worker --run-as nobody runs scripts as nobody", .enabled(if: getuid() == 0, "needs root"))
    func runAsNobody() async throws {
        let directory = try makeScriptsDirectory(["scripts/who.sh": "#!/bin/sh\nid -u\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let nobody = try ScriptCredentials.lookup("nobody")
        try await TestDatabase.withFresh { database, settings in
            let worker = try TockProcess(["worker", "--run-as", "nobody"], settings: settings, directory: directory)
            _ = try await database.createJob(JobDefinition(name: "who", script: "who.sh"))
            let run = try await database.runNow("who")
            #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" }, "\(worker.log)")
            #expect(try await database.run(run).output == "\(nobody.uid)\n")
            worker.signal(SIGTERM)
            #expect(try await worker.wait() == 0)
        }
    }

    @Test("a #! script runs from its open file ($0 is /dev/fd/3) and finds the files beside it through TOCK_SCRIPT")
    func scriptPathInEnvironment() async throws {
        let directory = try makeScriptsDirectory(["sub/where.sh": "#!/bin/sh\necho \"$0\"\n. \"$(dirname \"$TOCK_SCRIPT\")/lib.sh\"\n",
                                                  "sub/lib.sh": "echo \"lib beside $TOCK_SCRIPT\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            _ = try await database.createJob(JobDefinition(name: "where", script: "sub/where.sh"))
            let run = try await database.runNow("where")
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" })
            }
            let root = try ScriptSandbox(directory: directory).root
            #expect(try await database.run(run).output == "/dev/fd/3\nlib beside \(root)/sub/where.sh\n")
        }
    }
}
