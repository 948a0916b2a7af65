import Foundation
import Logging
import PostgresNIO
import TockCLI
import TockCore
import TockPostgres

/// One benchmark session: its database, scripts directory and worker processes.
final class BenchRun: @unchecked Sendable {
    let server: ConnectionSettings
    let settings: ConnectionSettings
    let directory: String
    let logger: Logger
    /// This executable, for `tock-bench worker`.
    let benchBinary: String

    init(server: ConnectionSettings, settings: ConnectionSettings, directory: String, logger: Logger, benchBinary: String) {
        self.server = server
        self.settings = settings
        self.directory = directory
        self.logger = logger
        self.benchBinary = benchBinary
    }

    /// The `tock` users install, built beside this executable: its workers run the scripts, its scheduler and API
    /// serve the scenarios that measure them.
    var tockBinary: String {
        get throws {
            let path = URL(fileURLWithPath: benchBinary).deletingLastPathComponent().appendingPathComponent("tock").path
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw TockError(.unavailable, "tock-bench runs the tock binary beside it, and \(path) is missing: "
                    + "build it too (swift build -c release --product tock)")
            }
            return path
        }
    }

    /// `prepare(server:logger:)` against the server `options` name, logging warnings and worse; a command's
    /// failure (exit status and message) when the server cannot be resolved or prepared.
    static func prepare(_ options: GlobalOptions) async throws -> (BenchRun, ConnectionSettings) {
        var logger = options.logger(label: "tock-bench", defaultLevel: .warning)
        logger.logLevel = min(logger.logLevel, .warning)
        let settings: ConnectionSettings
        do {
            settings = try resolveSettings(options, logger: logger, createEmbedded: true)
        } catch {
            throw fail(error)
        }
        do {
            return (try await prepare(server: settings, logger: logger), settings)
        } catch let error as TockError {
            throw fail(error)
        }
    }

    /// Creates and migrates `tock_bench_<pid>`, and a scripts directory with a copy of /bin/true (tock-clock is
    /// built there by the latency scenario).
    static func prepare(server: ConnectionSettings, logger: Logger) async throws -> BenchRun {
        let benchBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let name = "tock_bench_\(getpid())"
        do {
            try await withDatabase(server, logger: logger) { database, _ in
                _ = try await database.client.fetch("CREATE DATABASE \(unescaped: name)", logger: logger)
            }
        } catch {
            throw TockError(.failed, "could not create the benchmark database \(name) (\(TockError(from: error).message)); "
                + "tock-bench needs a role with CREATEDB on the server, and drops the database afterwards")
        }
        let settings = server.with(database: name)
        _ = try await withDatabase(settings, logger: logger) { _, client in
            try await Migrator(client: client, files: try SQLFiles.bundled(), logger: logger).migrate()
        }
        let directory = NSTemporaryDirectory() + "tock-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory + "/scripts", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: directory + "/scripts/true")
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: directory + "/scripts/true")
        // The sandbox runs scripts as whoever the worker is: keep the directory readable for the postgres user too.
        chmod(directory, 0o755)
        let run = BenchRun(server: server, settings: settings, directory: directory, logger: logger, benchBinary: benchBinary)
        // noop.sh does not exist: only `tock-bench worker`, which never runs a script, claims its runs.
        try await run.sql("""
            INSERT INTO tock.jobs (name, script) VALUES ('clock', 'tock-clock'), ('true', 'true'), ('noop', 'noop.sh')
            """)
        return run
    }

    func finish(keep: Bool) async {
        try? FileManager.default.removeItem(atPath: directory)
        guard !keep else {
            // stderr: stdout may be the --json document.
            FileHandle.standardError.write(Data("kept the benchmark database: \(settings.url(includingPassword: false))\n".utf8))
            return
        }
        try? await withDatabase(server, logger: logger) { database, _ in
            _ = try await database.client.fetch(
                "DROP DATABASE IF EXISTS \(unescaped: settings.database) WITH (FORCE)", logger: logger)
        }
    }

    func sql(_ query: PostgresQuery) async throws {
        try await withDatabase(settings, logger: logger) { database, _ in
            _ = try await database.client.fetch(query, logger: logger)
        }
    }

    // MARK: Worker processes

    /// A `tock` process against the benchmark database, its output in a log file.
    func startTock(_ arguments: [String], log name: String) throws -> Process {
        try start(try tockBinary, arguments, log: name)
    }

    /// `executable` with `arguments` against the benchmark database, its output in a log file.
    func start(_ executable: String, _ arguments: [String], log name: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments + ["--database-url", settings.url(), "--log-level", "warning"]
        let log = directory + "/\(name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardError = process.standardOutput
        try process.run()
        return process
    }

    /// Which worker a scenario starts: `tock worker`, which runs each run's script, or `tock-bench worker`, which
    /// finishes each at once without one.
    enum WorkerKind {
        case scripts, noop
    }

    /// `arguments` adds to each worker's command line, by its index.
    func startWorkers(_ count: Int, concurrency: Int, kind: WorkerKind,
                      arguments: (Int) -> [String] = { _ in [] }) async throws -> [Process] {
        let executable = kind == .noop ? benchBinary : try tockBinary
        var started: [Process] = []
        for index in 0..<count {
            started.append(try start(executable, ["worker", "--scripts-dir", directory + "/scripts", "--concurrency", "\(concurrency)"]
                                         + arguments(index),
                                     log: "worker-\(index)"))
        }
        try await withDatabase(settings, logger: logger) { database, _ in
            for _ in 0..<600 {
                let alive = try await database.client.fetch(
                    "SELECT count(*)::int FROM tock.worker_overview WHERE alive", logger: logger).first?.decode(Int.self) ?? 0
                if alive == count { return }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TockError(.failed, "the benchmark's workers did not start; see \(directory)/worker-*.log")
        }
        // Let each settle into its idle wait (LISTEN, first sweep done).
        try await Task.sleep(for: .seconds(1))
        return started
    }

    /// Runs `body`, then stops `processes` and waits for them, whether or not `body` threw: the next scenario
    /// must not share the database with this one's workers.
    func stopping<T>(_ processes: [Process], _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            await stopWorkers(processes)
            return value
        } catch {
            await stopWorkers(processes)
            throw error
        }
    }

    func stopWorkers(_ processes: [Process]) async {
        for process in processes where process.isRunning { process.terminate() }
        for _ in 0..<300 where processes.contains(where: \.isRunning) { try? await Task.sleep(for: .milliseconds(20)) }
        try? await sql("UPDATE tock.workers SET state = 'stopped' WHERE state IN ('running', 'stopping')")
    }

    // MARK: Scenarios

    /// Run-now one at a time against an idle worker, first in SQL (`tock.run_now`), then through the API
    /// (`POST /api/v1/jobs/clock/trigger` on a keep-alive connection to a `tock api` process).
    func latency(samples: Int) async throws -> BenchReport.Latency {
        try TockClock.build(into: directory + "/scripts")
        let workers = try await startWorkers(1, concurrency: 1, kind: .scripts)
        return try await stopping(workers) { try await withDatabase(self.settings, logger: self.logger) { _, client in
            let (toScript, toClaimed) = try await self.latencySamples(samples, client: client) {
                try await client.fetch("SELECT tock.run_now('clock')", logger: self.logger)[0].decode(Int64.self)
            }
            // The API process only now: while it runs, each run-now's change event also wakes it and its
            // LISTEN connection's server process, which share the two cores with the path being measured.
            let port = try BenchHTTPConnection.freePort()
            let api = try self.startTock(["api", "--api-port", "\(port)"], log: "api")
            let overHTTP = try await self.stopping([api]) {
                let http = try await self.connectAPI(port: port)
                return try await self.latencySamples(samples, client: client) {
                    let (status, body) = try http.request("POST", "/api/v1/jobs/clock/trigger")
                    guard status == 202, let match = body.firstMatch(of: /"run_id"\s*:\s*([0-9]+)/), let run = Int64(match.1) else {
                        throw TockError(.failed, "bench: POST /api/v1/jobs/clock/trigger answered \(status): \(body)")
                    }
                    return run
                }.toScript
            }
            return BenchReport.Latency(toScriptRunning: Distribution(nanoseconds: toScript),
                                       toClaimed: Distribution(nanoseconds: toClaimed),
                                       toScriptRunningOverHTTP: Distribution(nanoseconds: overHTTP))
        } }
    }

    /// The API process's port answers once it has started (up to 30 s).
    func connectAPI(port: Int) async throws -> BenchHTTPConnection {
        for _ in 0..<300 {
            if let connection = try? BenchHTTPConnection(port: port), (try? connection.request("GET", "/api/v1/health"))?.status == 200 {
                return connection
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TockError(.failed, "the benchmark's API did not start on port \(port); see \(directory)/api.log")
    }

    /// `samples` runs of tock-clock (after 5 warm-ups), each enqueued by `enqueue` once the previous one is done:
    /// from just before `enqueue` to the clock reading the script printed, and run-now → claimed by the database's clock.
    func latencySamples(_ samples: Int, client: PostgresClient,
                        enqueue: () async throws -> Int64) async throws -> (toScript: [Int64], toClaimed: [Int64]) {
        var toScript: [Int64] = []
        var toClaimed: [Int64] = []
        let warmup = 5
        for index in 0..<(warmup + samples) {
            let start = monotonicNanos()
            let run = try await enqueue()
            var result: (String?, Double?)?
            // The first look comes after the script has surely started: a query in the few milliseconds being
            // measured would take a core from the worker and PostgreSQL on a 2-core machine. The readings are
            // clocks taken by the script and the database, so when they are read does not change them.
            try await Task.sleep(for: .milliseconds(25))
            while result == nil {
                result = try await client.fetch("""
                    SELECT l.output, extract(epoch FROM h.started_at - h.enqueued_at)::float8
                    FROM tock.run_history h JOIN tock.run_logs l ON l.run_id = h.id
                    WHERE h.id = \(run) AND h.status = 'succeeded'
                    """, logger: logger).first?.decode((String?, Double?).self)
                if result == nil { try await Task.sleep(for: .milliseconds(5)) }
            }
            guard let (output, claimed) = result, let started = Int64((output ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw TockError(.failed, "run \(run) printed no clock reading")
            }
            if index >= warmup {
                toScript.append(started - start)
                toClaimed.append(Int64((claimed ?? 0) * 1e9))
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return (toScript, toClaimed)
    }

    /// Starts the workers, then enqueues `runs` fresh runs of `job` held back a few seconds (run_after), so every
    /// worker is idle and listening when they all become claimable together; times from the first claim to the
    /// last finish, from the database's clock. The peers' benchmark does the same: fresh rows, workers ready first.
    /// Asks `done` every `interval` until it says yes; after `limit` fails with `failure()` (what did not happen).
    func waitFor(every interval: Duration, upTo limit: Duration = .seconds(600), _ failure: () async -> String,
                 _ done: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while try await !done() {
            guard ContinuousClock.now < deadline else { throw TockError(.failed, await failure()) }
            try await Task.sleep(for: interval)
        }
    }

    func drain(job: String, runs: Int, workers count: Int, kind: WorkerKind, concurrency: Int) async throws -> BenchReport.Rate {
        try await sql("TRUNCATE tock.runs, tock.run_leases, tock.run_output, tock.finished_runs")
        try await sql("VACUUM ANALYZE tock.runs")
        try await sql("CHECKPOINT")
        let workers = try await startWorkers(count, concurrency: concurrency, kind: kind)
        return try await stopping(workers) { try await withDatabase(self.settings, logger: self.logger) { _, client in
            // The insert's NOTIFY wakes the workers: they find nothing claimable yet and sleep until run_after
            // (tock.next_delayed_run). Statistics are taken before the release, as they would be on a live queue.
            _ = try await client.fetch("""
                INSERT INTO tock.runs (job_id, trigger, run_after)
                SELECT j.id, 'sql', now() + interval '3 seconds' FROM tock.jobs j, generate_series(1, \(runs)) WHERE j.name = \(job)
                """, logger: logger)
            _ = try await client.fetch("ANALYZE tock.runs", logger: logger)
            // Watched through the workers' own counters (one row each): counting the runs table this often would
            // take CPU from the machinery being measured.
            var done = 0
            try await waitFor(every: .milliseconds(20), { "\(done) of \(runs) runs finished in 10 minutes" }) {
                done = try await client.fetch(
                    "SELECT coalesce(sum(runs_processed), 0)::int FROM tock.workers WHERE state = 'running'", logger: logger)
                    .first?.decode(Int.self) ?? 0
                return done >= runs
            }
            let failed = try await client.fetch("SELECT count(*)::int FROM tock.finished_runs WHERE status <> 'succeeded'", logger: logger)
                .first?.decode(Int.self) ?? 0
            guard failed == 0 else { throw TockError(.failed, "\(failed) benchmark runs did not succeed") }
            // finished_at is its finish transaction's start: the last batch's commit (about a millisecond) is left out.
            let seconds = try await client.fetch(
                "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM tock.finished_runs", logger: logger)
                .first?.decode(Double.self) ?? 0
            guard seconds > 0 else { throw TockError(.failed, "the benchmark runs have no start and finish times") }
            return BenchReport.Rate(workers: count, runs: runs, seconds: seconds, runsPerSecond: Double(runs) / seconds)
        } }
    }

    /// `jobs` jobs whose interval schedule fires at the same second, a few seconds ahead; a `tock scheduler` and two
    /// `tock-bench worker`s (no script processes: the scheduler and the claims are timed, not spawns); lateness is
    /// each run's start (claim) behind its fire time, from the database's clock.
    func schedule(jobs: Int, concurrency: Int) async throws -> Distribution {
        try await sql("TRUNCATE tock.runs, tock.run_leases, tock.run_output, tock.finished_runs")
        try await sql("DELETE FROM tock.jobs WHERE name LIKE 'due-%'")
        let workers = try await startWorkers(2, concurrency: concurrency, kind: .noop)
        let scheduler = try startTock(["scheduler"], log: "scheduler")
        return try await stopping(workers + [scheduler]) { try await withDatabase(self.settings, logger: self.logger) { _, client in
            // Anchored an hour before the fire second, so 'every 1 hour' next fires exactly then.
            _ = try await client.fetch("""
                INSERT INTO tock.jobs (name, script, schedule, anchor_at)
                SELECT 'due-' || i, 'noop.sh', 'every 1 hour', date_trunc('second', now()) + interval '4 seconds' - interval '1 hour'
                FROM generate_series(1, \(jobs)) i
                """, logger: logger)
            for _ in 0..<3000 {
                let done = try await client.fetch("""
                    SELECT count(*)::int FROM tock.finished_runs r JOIN tock.jobs j ON j.id = r.job_id
                    WHERE j.name LIKE 'due-%' AND r.status = 'succeeded'
                    """, logger: logger).first?.decode(Int.self) ?? 0
                if done >= jobs { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let lateness = try await client.fetch("""
                SELECT (extract(epoch FROM r.started_at - r.scheduled_for) * 1e9)::bigint
                FROM tock.finished_runs r JOIN tock.jobs j ON j.id = r.job_id
                WHERE j.name LIKE 'due-%' AND r.trigger = 'schedule' AND r.started_at IS NOT NULL
                """, logger: logger).map { try $0.decode(Int64.self) }
            guard lateness.count == jobs else {
                throw TockError(.failed, "\(lateness.count) of \(jobs) scheduled runs started; see \(directory)/scheduler.log")
            }
            return Distribution(nanoseconds: lateness)
        } }
    }

    func queue(runs: Int, workerCounts: [Int], concurrency: Int) async throws -> [BenchReport.Rate] {
        var rates: [BenchReport.Rate] = []
        for count in workerCounts {
            rates.append(try await drain(job: "noop", runs: runs, workers: count, kind: .noop, concurrency: concurrency))
        }
        return rates
    }

    func throughput(runs: Int, workerCounts: [Int], concurrency: Int) async throws -> BenchReport.Throughput {
        var tock: [BenchReport.Rate] = []
        for count in workerCounts {
            tock.append(try await drain(job: "true", runs: runs, workers: count, kind: .scripts, concurrency: concurrency))
        }
        var raw: [BenchReport.Rate] = []
        for loops in workerCounts {
            raw.append(try await rawSpawn(runs: runs, loops: loops))
        }
        return BenchReport.Throughput(tock: tock, rawSpawn: raw)
    }

    /// `runs` processes of the same /bin/true copy, spawned and reaped back to back by `loops` threads.
    func rawSpawn(runs: Int, loops: Int) async throws -> BenchReport.Rate {
        let path = directory + "/scripts/true"
        let start = monotonicNanos()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for loop in 0..<loops {
                let share = runs / loops + (loop < runs % loops ? 1 : 0)
                group.addTask {
                    for _ in 0..<share {
                        var pid: pid_t = 0
                        let status = path.withCString { cPath -> Int32 in
                            var argv: [UnsafeMutablePointer<CChar>?] = [strdup(cPath), nil]
                            defer { free(argv[0]) }
                            return posix_spawn(&pid, cPath, nil, nil, &argv, environ)
                        }
                        guard status == 0 else { throw TockError(.failed, "posix_spawn \(path): errno \(status)") }
                        var exit: Int32 = 0
                        waitpid(pid, &exit, 0)
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = Double(monotonicNanos() - start) / 1e9
        return BenchReport.Rate(workers: loops, runs: runs, seconds: seconds, runsPerSecond: Double(runs) / seconds)
    }
}
