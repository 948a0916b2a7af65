import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import TockCLI
import TockCore
import TockPostgres

/// `tock bench`: the production code paths (real `tock worker` processes, the SQL functions, NOTIFY) measured on
/// this machine, in a database of its own (`tock_bench_<pid>`, dropped afterwards) on the configured server,
/// default the embedded cluster.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure latency (run-now → script running), script throughput and queue throughput on this machine.",
        discussion: """
            Scenarios:
              latency     an idle worker; run-now one at a time; from just before tock.run_now to the moment the \
            script (tock-clock, which prints CLOCK_MONOTONIC first thing) runs; and run-now → claimed from the database
              throughput  runs of a copy of /bin/true with 1 and 2 worker processes, beside a plain spawn loop
              queue       the claim → finish machinery with no process (script ':noop'), 1 and 2 worker processes
              schedule    1,000 jobs (':noop') due at the same second, a scheduler and 2 workers: how late each run \
            started behind its fire time
              idle        an idle worker, then an idle scheduler, a minute each: the queries they issue, their memory
              scale       100,000 jobs and 5,000,000 runs of history (a few minutes to seed): each query of the \
            scheduler, the workers and the portal's API routes, timed (the portal's below 50 ms); then the workers' \
            calls again with 300,000 runs pending
            """)

    @OptionGroup var options: GlobalOptions
    static let allScenarios = ["latency", "throughput", "queue", "schedule", "idle", "scale"]
    @Argument(help: "latency, throughput, queue, schedule, idle, scale (default: all).")
    var scenarios: [String] = Bench.allScenarios
    @Option(help: "latency: samples after 5 warm-up runs.") var samples = 200
    @Option(help: "throughput: runs per measurement.") var runs = 4000
    @Option(help: "queue: runs per measurement.") var queueRuns = 20000
    @Option(help: "Worker processes to measure with, comma separated.") var workers = "1,2"
    @Option(help: "queue: each worker's concurrency, which is also its largest claim.") var queueConcurrency = 100
    @Option(help: "throughput: each worker's concurrency (slots for the runs in flight while claims and reports are under way: 16 left a worker waiting on round trips).") var concurrency = 64
    @Option(help: "schedule: jobs due at the same second.") var scheduleJobs = 1000
    @Option(help: "schedule: each of the 2 workers' concurrency (slots for every due run at once: jobs / 2).")
    var scheduleConcurrency = 500
    @Option(help: "idle: seconds each idle process is watched.") var idleSeconds = 60
    @Option(help: "scale: jobs in the database.") var scaleJobs = 100_000
    @Option(help: "scale: finished runs in the history.") var scaleRuns = 5_000_000
    @Option(help: "scale: times each query is timed.") var scaleRepeats = 20
    @Option(help: "scale: pending runs added at the end (half of them delayed), to time the worker's calls on a deep queue; 0: none.")
    var scaleBacklog = 300_000
    @Flag(help: "Keep the benchmark database afterwards.") var keep = false

    func validate() throws {
        for scenario in scenarios where !Bench.allScenarios.contains(scenario) {
            throw ValidationError("unknown scenario '\(scenario)': \(Bench.allScenarios.joined(separator: ", "))")
        }
        guard (5...3600).contains(idleSeconds) else { throw ValidationError("--idle-seconds: 5-3600") }
        guard scaleJobs >= 1000, scaleRuns >= 0, (1...1000).contains(scaleRepeats) else {
            throw ValidationError("--scale-jobs: at least 1000; --scale-runs: 0 or more; --scale-repeats: 1-1000")
        }
        guard scaleBacklog == 0 || scaleBacklog >= 200 * scaleRepeats else {
            throw ValidationError("--scale-backlog: 0, or at least 200 × --scale-repeats (each timed claim takes 100 ready runs)")
        }
        guard !workerCounts.isEmpty, workerCounts.allSatisfy({ (1...16).contains($0) }) else {
            throw ValidationError("--workers: a comma-separated list of 1-16, e.g. 1,2")
        }
    }

    var workerCounts: [Int] { workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() async throws {
        var logger = options.logger(label: "tock-bench", defaultLevel: .warning)
        logger.logLevel = min(logger.logLevel, .warning)
        let settings: ConnectionSettings
        do {
            settings = try resolveSettings(options, logger: logger, createEmbedded: true)
        } catch {
            throw fail(error)
        }
        let bench = try await BenchRun.prepare(server: settings, logger: logger)
        var report = BenchReport(machine: BenchReport.Machine.current(), database: settings.displayName)
        do {
            // In the order of allScenarios whatever the order asked: scale's millions of runs come last.
            for scenario in Bench.allScenarios where scenarios.contains(scenario) {
                switch scenario {
                case "latency": report.latency = try await bench.latency(samples: samples)
                case "schedule":
                    report.schedule = try await bench.schedule(jobs: scheduleJobs, concurrency: scheduleConcurrency)
                case "idle": report.idle = try await bench.idle(seconds: idleSeconds)
                case "scale":
                    report.scale = try await bench.scale(jobs: scaleJobs, runs: scaleRuns, backlog: scaleBacklog,
                                                        repeats: scaleRepeats)
                case "throughput":
                    report.throughput = try await bench.throughput(runs: runs, workerCounts: workerCounts, concurrency: concurrency)
                default:
                    report.queue = try await bench.queue(runs: queueRuns, workerCounts: workerCounts, concurrency: queueConcurrency)
                }
            }
        } catch {
            await bench.finish(keep: keep)
            throw error
        }
        await bench.finish(keep: keep)
        if options.json { try printJSON(report) } else { print(report.text) }
    }
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock tock-clock prints.
func monotonicNanos() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// Percentiles of a sample, in milliseconds.
struct Distribution: Encodable {
    var count: Int
    var minMs: Double
    var p50Ms: Double
    var p95Ms: Double
    var p99Ms: Double
    var maxMs: Double

    init(nanoseconds samples: [Int64]) {
        let sorted = samples.sorted().map { Double($0) / 1e6 }
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let rank = p * Double(sorted.count - 1)
            let low = Int(rank.rounded(.down)), high = Int(rank.rounded(.up))
            return sorted[low] + (sorted[high] - sorted[low]) * (rank - Double(low))
        }
        count = sorted.count
        minMs = sorted.first ?? .nan
        p50Ms = percentile(0.5)
        p95Ms = percentile(0.95)
        p99Ms = percentile(0.99)
        maxMs = sorted.last ?? .nan
    }

    var row: [String] { [minMs, p50Ms, p95Ms, p99Ms, maxMs].map { String(format: "%.2f", $0) } }
}

struct BenchReport: Encodable {
    struct Machine: Encodable {
        var cores: Int
        var memoryGiB: Double
        var kernel: String
        static func current() -> Machine {
            var name = utsname()
            uname(&name)
            let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return Machine(cores: ProcessInfo.processInfo.activeProcessorCount,
                           memoryGiB: (Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824 * 10).rounded() / 10,
                           kernel: release)
        }
    }
    struct Latency: Encodable {
        var toScriptRunning: Distribution
        var toClaimed: Distribution
        /// The same as toScriptRunning, run-now sent as `POST /api/v1/jobs/clock/trigger`.
        var toScriptRunningOverHTTP: Distribution
    }
    struct Rate: Encodable {
        var workers: Int
        var runs: Int
        var seconds: Double
        var runsPerSecond: Double
    }
    struct Throughput: Encodable {
        var tock: [Rate]
        /// The same number of processes spawned back to back by a plain loop (1 and 2 loops), without Tock.
        var rawSpawn: [Rate]
    }

    var machine: Machine
    var database: String
    var latency: Latency?
    var throughput: Throughput?
    var queue: [Rate]?
    /// schedule: how late each run started behind its fire time.
    var schedule: Distribution?
    var scale: Scale?
    var idle: [IdleProcess]?

    var text: String {
        var out = "tock bench on \(machine.cores) cores, \(machine.memoryGiB) GiB, Linux \(machine.kernel); \(database)\n"
        if let latency {
            var table = TextTable("LATENCY (ms)", "N", "MIN", "P50", "P95", "P99", "MAX")
            table.append(["run-now → script running", "\(latency.toScriptRunning.count)"] + latency.toScriptRunning.row)
            table.append(["run-now → claimed (db clock)", "\(latency.toClaimed.count)"] + latency.toClaimed.row)
            table.append(["API run-now → script running", "\(latency.toScriptRunningOverHTTP.count)"]
                         + latency.toScriptRunningOverHTTP.row)
            out += "\n" + table.render() + "\n"
        }
        if let throughput {
            var table = TextTable("SCRIPT THROUGHPUT", "PROCESSES", "RUNS", "SECONDS", "RUNS/S", "OF RAW")
            for rate in throughput.tock {
                let raw = throughput.rawSpawn.first { $0.workers == rate.workers } ?? throughput.rawSpawn.last
                table.append(["tock (/bin/true)", "\(rate.workers)", "\(rate.runs)", String(format: "%.2f", rate.seconds),
                              String(format: "%.0f", rate.runsPerSecond),
                              raw.map { String(format: "%.0f%%", rate.runsPerSecond / $0.runsPerSecond * 100) } ?? "-"])
            }
            for rate in throughput.rawSpawn {
                table.append(["plain spawn loop", "\(rate.workers)", "\(rate.runs)", String(format: "%.2f", rate.seconds),
                              String(format: "%.0f", rate.runsPerSecond), ""])
            }
            out += "\n" + table.render() + "\n"
        }
        if let queue {
            var table = TextTable("QUEUE (no-op runs)", "PROCESSES", "RUNS", "SECONDS", "RUNS/S")
            for rate in queue {
                table.append(["tock", "\(rate.workers)", "\(rate.runs)", String(format: "%.2f", rate.seconds),
                              String(format: "%.0f", rate.runsPerSecond)])
            }
            out += "\n" + table.render() + "\n"
        }
        if let schedule {
            var table = TextTable("SCHEDULE LATENESS (ms)", "RUNS", "MIN", "P50", "P95", "P99", "MAX")
            table.append(["start behind fire time", "\(schedule.count)"] + schedule.row)
            out += "\n" + table.render() + "\n"
        }
        if let idle {
            var table = TextTable("IDLE", "SECONDS", "QUERIES", "EXPECTED", "RSS MIB")
            for process in idle {
                table.append([process.process, "\(process.seconds)", "\(process.transactions)", process.expected,
                              String(format: "%.1f", process.rssMegabytes)])
            }
            out += "\n" + table.render() + "\n"
        }
        if let scale {
            out += "\nSCALE: \(scale.jobs) jobs, \(scale.runs) runs of history (seeded in \(String(format: "%.0f", scale.seedSeconds)) s; "
                + "database \(scale.databaseSize)); each query timed \(scale.queries.first?.count ?? 0) times"
                + (scale.backlog > 0 ? "; the last ones with \(scale.backlog) runs pending\n" : "\n")
            var table = TextTable("QUERY", "CALLED BY", "ROWS", "P50 MS", "MAX MS", "")
            for query in scale.queries {
                let verdict = query.portal ? (query.p50Ms <= 50 ? "ok (< 50 ms)" : "SLOW (portal: < 50 ms)") : ""
                table.append([query.name, query.caller, "\(query.rows)", String(format: "%.2f", query.p50Ms),
                              String(format: "%.2f", query.maxMs), verdict])
            }
            out += table.render() + "\n"
        }
        return out
    }
}

/// One benchmark session: its database, scripts directory and worker processes.
final class BenchRun: @unchecked Sendable {
    let server: ConnectionSettings
    let settings: ConnectionSettings
    let directory: String
    let logger: Logger
    let binary: String

    init(server: ConnectionSettings, settings: ConnectionSettings, directory: String, logger: Logger, binary: String) {
        self.server = server
        self.settings = settings
        self.directory = directory
        self.logger = logger
        self.binary = binary
    }

    /// Creates and migrates `tock_bench_<pid>`, and a scripts directory with tock-clock and a copy of /bin/true.
    static func prepare(server: ConnectionSettings, logger: Logger) async throws -> BenchRun {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let clock = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("tock-clock").path
        guard FileManager.default.isExecutableFile(atPath: clock) else {
            throw fail(TockError(.unavailable, "tock-clock is missing beside \(binary): ops/up builds it (a C compiler: clang -O2 -o \(clock) ops/tock-clock.c)"))
        }
        let name = "tock_bench_\(getpid())"
        do {
            try await withDatabase(server, logger: logger) { database, _ in
                _ = try await database.client.fetch("CREATE DATABASE \(unescaped: name)", logger: logger)
            }
        } catch {
            throw fail(TockError(.failed, "could not create the benchmark database \(name) (\(TockError(from: error).message)); "
                + "tock bench needs a role with CREATEDB on the server, and drops the database afterwards"))
        }
        let settings = server.with(database: name)
        _ = try await withDatabase(settings, logger: logger) { _, client in
            try await Migrator(client: client, files: try SQLFiles.bundled(), logger: logger).migrate()
        }
        let directory = NSTemporaryDirectory() + "tock-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory + "/scripts", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: directory + "/scripts/tock-clock")
        try? FileManager.default.removeItem(atPath: directory + "/scripts/true")
        try FileManager.default.copyItem(atPath: clock, toPath: directory + "/scripts/tock-clock")
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: directory + "/scripts/true")
        // The sandbox runs scripts as whoever the worker is: keep the directory readable for the postgres user too.
        chmod(directory, 0o755)
        let run = BenchRun(server: server, settings: settings, directory: directory, logger: logger, binary: binary)
        try await run.sql("""
            INSERT INTO tock.jobs (name, script) VALUES ('clock', 'tock-clock'), ('true', 'true'), ('noop', ':noop')
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

    /// A `tock` process of this binary against the benchmark database, its output in a log file.
    func startTock(_ arguments: [String], log name: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments + ["--database-url", settings.url(), "--log-level", "warning"]
        let log = directory + "/\(name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardError = process.standardOutput
        try process.run()
        return process
    }

    func startWorkers(_ count: Int, concurrency: Int) async throws -> [Process] {
        var started: [Process] = []
        for index in 0..<count {
            started.append(try startTock(["worker", "--scripts-dir", directory + "/scripts", "--concurrency", "\(concurrency)"],
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
        let workers = try await startWorkers(1, concurrency: 1)
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
    func drain(job: String, runs: Int, workers count: Int, concurrency: Int) async throws -> BenchReport.Rate {
        try await sql("DELETE FROM tock.runs")
        try await sql("VACUUM ANALYZE tock.runs")
        try await sql("CHECKPOINT")
        let workers = try await startWorkers(count, concurrency: concurrency)
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
            let deadline = ContinuousClock.now + .seconds(600)
            while true {
                let done = try await client.fetch(
                    "SELECT coalesce(sum(runs_processed), 0)::int FROM tock.workers WHERE state = 'running'", logger: logger)
                    .first?.decode(Int.self) ?? 0
                if done >= runs { break }
                guard ContinuousClock.now < deadline else { throw TockError(.failed, "\(done) of \(runs) runs finished in 10 minutes") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let failed = try await client.fetch("SELECT count(*)::int FROM tock.runs WHERE status <> 'succeeded'", logger: logger)
                .first?.decode(Int.self) ?? 0
            guard failed == 0 else { throw TockError(.failed, "\(failed) benchmark runs did not succeed") }
            // finished_at is its finish transaction's start: the last batch's commit (about a millisecond) is left out.
            let seconds = try await client.fetch(
                "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM tock.runs", logger: logger)
                .first?.decode(Double.self) ?? 0
            guard seconds > 0 else { throw TockError(.failed, "the benchmark runs have no start and finish times") }
            return BenchReport.Rate(workers: count, runs: runs, seconds: seconds, runsPerSecond: Double(runs) / seconds)
        } }
    }

    /// `jobs` no-op jobs whose interval schedule fires at the same second, a few seconds ahead; a scheduler and two
    /// workers; lateness is each run's start (claim) behind its fire time, from the database's clock.
    func schedule(jobs: Int, concurrency: Int) async throws -> Distribution {
        try await sql("DELETE FROM tock.runs")
        try await sql("DELETE FROM tock.jobs WHERE name LIKE 'due-%'")
        let workers = try await startWorkers(2, concurrency: concurrency)
        let scheduler = try startTock(["scheduler"], log: "scheduler")
        return try await stopping(workers + [scheduler]) { try await withDatabase(self.settings, logger: self.logger) { _, client in
            // Anchored an hour before the fire second, so 'every 1 hour' next fires exactly then.
            _ = try await client.fetch("""
                INSERT INTO tock.jobs (name, script, schedule, anchor_at)
                SELECT 'due-' || i, ':noop', 'every 1 hour', date_trunc('second', now()) + interval '4 seconds' - interval '1 hour'
                FROM generate_series(1, \(jobs)) i
                """, logger: logger)
            for _ in 0..<3000 {
                let done = try await client.fetch("""
                    SELECT count(*)::int FROM tock.runs r JOIN tock.jobs j ON j.id = r.job_id
                    WHERE j.name LIKE 'due-%' AND r.status = 'succeeded'
                    """, logger: logger).first?.decode(Int.self) ?? 0
                if done >= jobs { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let lateness = try await client.fetch("""
                SELECT (extract(epoch FROM r.started_at - r.scheduled_for) * 1e9)::bigint
                FROM tock.runs r JOIN tock.jobs j ON j.id = r.job_id
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
            rates.append(try await drain(job: "noop", runs: runs, workers: count, concurrency: concurrency))
        }
        return rates
    }

    func throughput(runs: Int, workerCounts: [Int], concurrency: Int) async throws -> BenchReport.Throughput {
        var tock: [BenchReport.Rate] = []
        for count in workerCounts {
            tock.append(try await drain(job: "true", runs: runs, workers: count, concurrency: concurrency))
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
