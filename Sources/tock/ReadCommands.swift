import ArgumentParser
import Foundation
import TockCLI
import TockCore
import TockPostgres

enum RunsTable {
    static func render(_ runs: [RunInfo]) -> String {
        var table = TextTable("ID", "JOB", "TRIGGER", "STATUS", "ATTEMPT", "STARTED", "DURATION", "WORKER", "EXIT")
        for run in runs {
            table.append(["\(run.id)", run.jobName, run.trigger, run.status, "\(run.attempt)",
                          Display.time(run.startedAt), Display.duration(run.durationSeconds), run.workerName ?? "-",
                          run.exitCode.map(String.init) ?? "-"])
        }
        return table.render()
    }
}

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recent runs, newest first.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "Only this job's runs (name or id).") var job: String?
    @Option(help: "Only runs in this status: pending, running, succeeded, failed, timed_out, cancelled, dead.") var status: String?
    @Option(help: "How many.") var limit: Int = 50
    @Flag(help: "Only stuck runs: running past their timeout, or on a worker that is no longer alive (tock.stuck_runs).")
    var stuck = false

    func run() async throws {
        if stuck {
            let json = options.json
            return try await oneShot(options) { database, _ in
                let runs = try await database.stuckRuns()
                if json { return try printJSON(runs) }
                guard !runs.isEmpty else { return print("no stuck runs") }
                var table = TextTable("ID", "JOB", "WORKER", "STARTED", "RUNNING", "TIMEOUT", "WHY")
                for run in runs {
                    table.append(["\(run.runId)", run.jobName, run.workerName ?? "-", Display.time(run.startedAt),
                                  Display.duration(run.runningSeconds), Display.duration(run.timeoutSeconds), run.reason])
                }
                print(table.render())
                print("`tock job reset JOB` ends a job's stuck runs and restarts its schedule; `tock run cancel ID` stops one run.")
            }
        }
        let status: RunStatus?
        do {
            status = try self.status.map { text in try RunStatus(userInput: text) }
        } catch let error as InputError {
            throw fail(TockError(error))
        }
        let (json, job, limit) = (options.json, job, limit)
        try await oneShot(options) { database, _ in
            let runs = try await database.runs(job: job, status: status, limit: limit)
            if json { return try printJSON(runs) }
            print(runs.isEmpty ? "no runs" : RunsTable.render(runs))
        }
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "One run: show, cancel, retry.",
                                                    subcommands: [Show.self, Cancel.self, Retry.self])

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a run: a pending one at once; a running one gets SIGTERM, then SIGKILL after its worker's grace.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The run id.") var id: Int64

        func run() async throws {
            let (json, id) = (options.json, id)
            try await oneShot(options) { database, _ in
                let state = try await database.cancel(id)
                if json { try printJSON(RunAction(runId: id, status: state)) } else { print("run \(id) \(state)") }
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run an ended run (failed, dead, cancelled, …) again as a new attempt.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The run id.") var id: Int64

        func run() async throws {
            let (json, id) = (options.json, id)
            try await oneShot(options) { database, _ in
                let new = try await database.retry(id)
                if json { try printJSON(RunAction(runId: new, status: "pending")) } else { print("run \(new) enqueued (retry of \(id))") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A run's details and output.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The run id.") var id: Int64

        func run() async throws {
            let (json, id) = (options.json, id)
            try await oneShot(options) { database, _ in
                let run = try await database.run(id)
                if json { return try printJSON(run) }
                print("""
                    run:        \(run.id) of \(run.jobName) (attempt \(run.attempt), \(run.trigger)\(run.upstream.map { " after run \($0.runId) of \($0.job), \($0.status)" } ?? ""))
                    status:     \(run.status)\(run.exitCode.map { " (exit \($0))" } ?? "")
                    error:      \(run.error ?? "-")
                    scheduled:  \(Display.time(run.scheduledFor))
                    enqueued:   \(Display.time(run.enqueuedAt))
                    started:    \(Display.time(run.startedAt))
                    finished:   \(Display.time(run.finishedAt))
                    duration:   \(Display.duration(run.durationSeconds))
                    worker:     \(run.workerName ?? "-")
                    parameters: \(run.params.map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") } ?? "-")
                    output:     \(run.outputBytes.map { "\($0) bytes" } ?? "-")\(run.outputTruncated == true ? " (only the last part is kept)" : "")
                    ---
                    """)
                let output = run.output ?? ""
                print(output, terminator: output.hasSuffix("\n") || output.isEmpty ? "" : "\n")
            }
        }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Workers: state, heartbeat, runs in flight and processed.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let json = options.json
        try await oneShot(options) { database, _ in
            let workers = try await database.workers()
            if json { return try printJSON(workers) }
            var table = TextTable("ID", "NAME", "STATE", "ALIVE", "CONCURRENCY", "RUNNING", "PROCESSED", "LAST HEARTBEAT", "STARTED")
            for worker in workers {
                table.append(["\(worker.id)", worker.name, worker.state,
                              worker.alive ? "yes" : (worker.state == "stopped" ? "no" : "STALE"),
                              "\(worker.concurrency)", "\(worker.running)", "\(worker.runsProcessed)",
                              "\(Display.duration(worker.heartbeatAgeSeconds)) ago", Display.time(worker.startedAt)])
            }
            print(workers.isEmpty ? "no workers have registered: start one with `tock worker` or `tock up`" : table.render())
        }
    }
}

struct Queue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The queue: runs waiting by priority, how many are ready, and how long the oldest has waited.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let json = options.json
        try await oneShot(options) { database, _ in
            let lag = try await database.lag()
            let depth = try await database.queueDepth()
            if json {
                struct Shown: Encodable { var total: QueueDepth; var byPriority: [LagRow] }
                return try printJSON(Shown(total: depth, byPriority: lag))
            }
            var table = TextTable("PRIORITY", "WAITING", "READY", "DELAYED", "OLDEST READY WAITED")
            for row in lag {
                table.append(["\(row.priority)", "\(row.waiting)", "\(row.ready)", "\(row.delayed)",
                              row.ready > 0 ? Display.duration(row.oldestReadyAgeSeconds) : "-"])
            }
            if !lag.isEmpty { print(table.render()) }
            print("\(depth.pending) pending (\(depth.ready) ready, \(depth.delayed) delayed), \(depth.running) running; "
                + "oldest ready waited \(Display.duration(depth.oldestReadyAgeSeconds))")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Database, migrations, jobs, queue and workers at a glance.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let json = options.json
        try await oneShot(options) { database, _ in
            let upToDate = try await database.migrationsCurrent()
            let jobs = try await database.jobs()
            let depth = try await database.queueDepth()
            let workers = try await database.workers()
            struct Summary: Encodable {
                var database: String
                var migrationsCurrent: Bool
                var jobs: Int
                var paused: Int
                var queue: QueueDepth
                var workersAlive: Int
                var nextRunAt: Date?
            }
            let summary = Summary(
                database: database.settings?.displayName ?? "-", migrationsCurrent: upToDate, jobs: jobs.count,
                paused: jobs.filter { !$0.enabled }.count, queue: depth, workersAlive: workers.filter(\.alive).count,
                nextRunAt: jobs.compactMap(\.nextRunAt).min())
            if json { return try printJSON(summary) }
            print("""
                database:    \(summary.database)
                migrations:  \(upToDate ? "current" : "PENDING: run `tock migrate`")
                jobs:        \(summary.jobs) (\(summary.paused) paused), next run \(Display.time(summary.nextRunAt))
                queue:       \(depth.ready) ready, \(depth.delayed) delayed, \(depth.running) running; oldest ready waited \(Display.duration(depth.oldestReadyAgeSeconds))
                workers:     \(summary.workersAlive) alive
                """)
        }
    }
}

struct SchedulePreview: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "schedule",
        abstract: "Check a schedule string and print its next fire times, computed by the database.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "e.g. 'daily at 06:00', '*/15 * * * *'") var schedule: String
    @Option(help: "The IANA time zone.") var timezone: String = "UTC"
    @Option(help: "How many fire times.") var count: Int = 5

    func run() async throws {
        let (json, schedule, timezone, count) = (options.json, schedule, timezone, count)
        try await oneShot(options) { database, _ in
            let times = try await database.nextFireTimes(schedule: schedule, timezone: timezone, count: count)
            if json { return try printJSON(times) }
            let zone = TimeZone(identifier: timezone) ?? .gmt
            for time in times {
                print("\(Display.time(time))  (\(time.formatted(Date.VerbatimFormatStyle(format: "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits)", timeZone: zone, calendar: Calendar(identifier: .gregorian)))) \(timezone))")
            }
            if times.isEmpty { print("never fires (manual)") }
        }
    }
}
