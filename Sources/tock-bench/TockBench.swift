import ArgumentParser
import Foundation
import Logging
import TockCLI
import TockCore

/// `tock-bench`: Tock's benchmarks, apart from the `tock` users install. The production code paths (real worker
/// and scheduler processes, the SQL functions, NOTIFY) measured on this machine, in a database of its own
/// (`tock_bench_<pid>`, dropped afterwards) on the configured server, default the embedded cluster.
@main
struct TockBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tock-bench",
        abstract: "Measure Tock on this machine: latency, script and queue throughput, schedule lateness, idle cost, scale.",
        discussion: """
            `tock-bench [SCENARIO …]` runs the scenarios (all by default); `tock-bench soak` runs a compressed day \
            and checks that nothing grows, is lost or doubled; `tock-bench worker` is the no-op worker the queue, \
            schedule and soak scenarios start. It runs `tock` processes from its own directory: build both \
            (swift build -c release --product tock; swift build -c release --product tock-bench).
            """,
        version: TockVersion.current,
        subcommands: [Measure.self, Soak.self, BenchWorker.self],
        defaultSubcommand: Measure.self)
}

/// The scenarios, one after another in one benchmark database.
struct Measure: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the scenarios (the default command: `tock-bench queue` is `tock-bench run queue`).",
        discussion: """
            Scenarios:
              latency     an idle `tock worker`; run-now one at a time; from just before tock.run_now to the moment \
            the script (tock-clock, which prints CLOCK_MONOTONIC first thing) runs; and run-now → claimed from the \
            database; then the same through a `tock api` process
              throughput  runs of a copy of /bin/true with 1 and 2 `tock worker` processes, beside a plain spawn loop
              queue       the claim → finish machinery with no script process: 1 and 2 `tock-bench worker` processes
              schedule    1,000 jobs due at the same second, a `tock scheduler` and 2 `tock-bench worker` processes: \
            how late each run started behind its fire time
              idle        an idle `tock worker`, then an idle `tock scheduler`, a minute each: the queries they issue, \
            their memory
              scale       100,000 jobs and 5,000,000 runs of history (a few minutes to seed): each query of the \
            scheduler, the workers and the portal's API routes, timed (the portal's below 50 ms); then the workers' \
            calls again with 300,000 runs pending
            """)

    @OptionGroup var options: GlobalOptions
    static let allScenarios = ["latency", "throughput", "queue", "schedule", "idle", "scale"]
    @Argument(help: "latency, throughput, queue, schedule, idle, scale (default: all).")
    var scenarios: [String] = Measure.allScenarios
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
        for scenario in scenarios where !Measure.allScenarios.contains(scenario) {
            throw ValidationError("unknown scenario '\(scenario)': \(Measure.allScenarios.joined(separator: ", "))")
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
        let (bench, settings) = try await BenchRun.prepare(options)
        var report = BenchReport(machine: BenchReport.Machine.current(), database: settings.displayName)
        do {
            // In the order of allScenarios whatever the order asked: scale's millions of runs come last.
            for scenario in Measure.allScenarios where scenarios.contains(scenario) {
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
            if let error = error as? TockError { throw fail(error) }
            throw error
        }
        await bench.finish(keep: keep)
        if options.json { try printJSON(report) } else { print(report.text) }
    }
}
