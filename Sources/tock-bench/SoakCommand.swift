import ArgumentParser
import Foundation
import TockCLI
import TockCore

/// `tock-bench soak`: a day of a busy deployment compressed into --minutes, on a database of its own. It passes
/// when Tock stays flat (timings, in-flight tables, memory) and loses and doubles nothing.
struct Soak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "A compressed day: fails if Tock's timings, in-flight tables or memory grow, or a run is lost or doubled.",
        discussion: """
            Two `tock-bench worker`s (runs of jobs named soak-noop-* finish at once and are written to a file; other \
            jobs run their script in the sandbox), two `tock scheduler`s, --jobs scheduled jobs (every 10 s to every \
            minute, and cron */1), a run-now of a real script (tock-clock, which appends $TOCK_RUN_ID to a file) every \
            --run-now-ms, and a steady no-op load at half the queue's capacity (measured first with the scheduled jobs firing, enqueueing included) or --load. \
            History retention is set to 5 minutes (1 hour where that is refused).

            Every --interval-seconds it records runs/s, run-now → script running and → claimed, schedule lateness \
            (started_at - scheduled_for), the size and dead tuples of every table and index in schema tock \
            (partitions summed under their parent), WAL written, and each process's RSS: --out gets soak.json and \
            minutes.csv (bench/plot-soak draws them).

            Checks, after --warmup-seconds, the first window against the last (10 minutes each, or a third of the \
            rest when shorter): timing, each p99 within 1.5×; growth, each in-flight table and index (unpartitioned, \
            not jobs, workers, timezones, migrations or config) at most 1.2× + 1 MiB; memory, each process's RSS at \
            most 1.2×; loss, every no-op run, fire time and run-now ran exactly once, from the files and from \
            tock.run_history. The exit status is 1 when a check of the --checks kinds fails, naming it.
            """)

    @OptionGroup var options: GlobalOptions
    @Option(help: "How long the soak runs, in minutes (rounded to whole intervals).") var minutes: Double = 30
    @Option(help: "Where soak.json, minutes.csv and the processes' logs go.") var out = ".tock/bench/soak"
    @Option(help: "Scheduled jobs, a sixth each of every 10s, 15s, 20s, 30s, 1m and cron */1.") var jobs = 10_000
    @Option(help: "No-op runs per second (default: half the queue's capacity, measured first with the scheduled jobs firing: drains, then 30 s of runs inserted at the drains' rate).") var load: Double?
    @Option(help: "Milliseconds between run-nows of the script job.") var runNowMs = 100
    @Option(help: "Seconds between samples.") var intervalSeconds = 60
    @Option(help: "Seconds at the start the comparisons leave out.") var warmupSeconds = 60
    @Option(help: "Each worker's concurrency (also its largest claim).") var concurrency = 100
    @Option(help: "The kinds of check that decide the exit status, comma separated: timing, growth, memory, loss.")
    var checks = "timing,growth,memory,loss"
    @Flag(help: "Keep the soak's database afterwards.") var keep = false

    static let checkKinds: Set<String> = ["timing", "growth", "memory", "loss"]

    var enforced: Set<String> { Set(checks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }

    var plan: SoakPlan {
        SoakPlan(intervals: max(Int((minutes * 60 / Double(intervalSeconds)).rounded()), 1), intervalSeconds: intervalSeconds,
                 warmupSeconds: warmupSeconds, jobs: jobs, load: load, runNowMs: runNowMs, concurrency: concurrency,
                 enforced: enforced)
    }

    func validate() throws {
        guard (1...3600).contains(intervalSeconds) else { throw ValidationError("--interval-seconds: 1-3600") }
        guard (0...86_400).contains(warmupSeconds) else { throw ValidationError("--warmup-seconds: 0-86400") }
        let plan = plan
        let warmup = Int((Double(warmupSeconds) / Double(intervalSeconds)).rounded(.up))
        guard minutes > 0, minutes <= 7 * 24 * 60, plan.intervals - warmup >= 3 else {
            throw ValidationError("--minutes: at least the warm-up (\(warmupSeconds) s) and 3 intervals of \(intervalSeconds) s, "
                + "at most a week")
        }
        guard (0...100_000).contains(jobs) else { throw ValidationError("--jobs: 0-100000") }
        if let load { guard load > 0 && load <= 1_000_000 else { throw ValidationError("--load: 1-1000000 runs/s") } }
        guard (10...60_000).contains(runNowMs) else { throw ValidationError("--run-now-ms: 10-60000") }
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency: 1-1000") }
        let unknown = enforced.subtracting(Self.checkKinds)
        guard unknown.isEmpty else {
            throw ValidationError("--checks: unknown \(unknown.sorted().joined(separator: ", ")); use timing, growth, memory, loss")
        }
    }

    func run() async throws {
        let (bench, settings) = try await BenchRun.prepare(options)
        let report: SoakReport
        do {
            report = try await bench.soak(plan, machine: BenchReport.Machine.current(), database: settings.displayName)
            try write(report, logsFrom: bench.directory)
        } catch {
            try? copyLogs(from: bench.directory)
            await bench.finish(keep: keep)
            if let error = error as? TockError { throw fail(error) }
            throw error
        }
        await bench.finish(keep: keep)
        if options.json { try printJSON(report) } else { print(report.text, terminator: "") }
        if !report.passed {
            throw fail(TockError(.failed, "soak failed: " + report.failures.map { "\($0.name) (\($0.detail))" }.joined(separator: "; ")))
        }
    }

    /// soak.json and minutes.csv in --out, with the processes' logs.
    func write(_ report: SoakReport, logsFrom directory: String) throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try TockJSON.encoder().encode(report).write(to: URL(fileURLWithPath: out + "/soak.json"))
        try Data(report.csv.utf8).write(to: URL(fileURLWithPath: out + "/minutes.csv"))
        try copyLogs(from: directory)
    }

    /// The workers' and schedulers' own logs (warnings and errors), for a failure to be read after the soak's
    /// directory is gone.
    func copyLogs(from directory: String) throws {
        let logs = out + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory)
        where name.hasSuffix(".log") && (name.hasPrefix("worker-") || name.hasPrefix("scheduler-")) {
            try? FileManager.default.removeItem(atPath: logs + "/" + name)
            try FileManager.default.copyItem(atPath: directory + "/" + name, toPath: logs + "/" + name)
        }
    }
}
