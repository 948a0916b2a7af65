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

/// The run filter of `tock runs` and `tock bulk`, as `tock.find_runs` takes it.
struct RunFilterOptions: ParsableArguments {
    @Option(help: "Only this job's runs (name or id).") var job: String?
    @Option(help: "Only runs in these statuses, comma separated: pending, running, succeeded, failed, timed_out, cancelled, dead.")
    var status: String?
    @Option(help: "Only runs started this way: schedule, manual, sql, api, retry, chain.") var trigger: String?
    @Option(help: "Only runs of the worker of this name.") var worker: String?
    @Option(help: "Only runs of this pool.") var pool: String?
    @Option(help: "Only runs that ended (or, in flight, were enqueued) since: 30m, 1h, 7d, or a timestamp.") var since: String?
    @Option(help: "Only runs that ended (or were enqueued) before: 30m, 1h, 7d ago, or a timestamp.") var until: String?

    /// The filter as JSON, or nil for every run.
    var json: String? {
        let values = ["job": job, "status": status, "trigger": trigger, "worker": worker, "pool": pool, "since": since,
                      "until": until].compactMapValues { $0 }
        guard !values.isEmpty, let data = try? JSONSerialization.data(withJSONObject: values, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs of every job, newest first, by status, job, trigger, worker, pool and time.")
    @OptionGroup var options: GlobalOptions
    @OptionGroup var filter: RunFilterOptions
    @Option(help: "How many (at most 1000).") var limit: Int = 50
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
        let (json, filter, limit) = (options.json, filter.json, limit)
        try await oneShot(options) { database, _ in
            let runs = try await database.findRuns(filter: filter, limit: limit)
            if json { return try printJSON(runs) }
            print(runs.isEmpty ? "no runs" : RunsTable.render(runs))
        }
    }
}

struct Bulk: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retry, cancel or delete many runs at once: those given by id, or those a filter matches (at most --limit a call).",
        discussion: """
            Without --yes it only says how many runs it would act on. One transaction, one audit entry.
              tock bulk retry --status failed,timed_out,dead --since 1h --yes
              tock bulk cancel --job nightly-report --status pending --yes
              tock bulk delete --run 41 --run 42 --yes
            """)
    enum Action: String, ExpressibleByArgument, CaseIterable { case retry, cancel, delete }

    @OptionGroup var options: GlobalOptions
    @Argument(help: "retry (runs that ended other than succeeded), cancel (pending or running), delete (ended runs, from the history).")
    var action: Action
    @OptionGroup var filter: RunFilterOptions
    @Option(name: .customLong("run"), help: "A run id (repeat for several); instead of a filter.") var runs: [Int64] = []
    @Option(help: "At most this many runs a call (1-1000); the newest first.") var limit: Int = 1000
    @Flag(help: "Do it; without it, only count.") var yes = false

    func validate() throws {
        if !runs.isEmpty && filter.json != nil {
            throw ValidationError("give --run ids or a filter, not both")
        }
        if runs.isEmpty && filter.json == nil {
            throw ValidationError("give --run ids or a filter (--status, --job, --since, …): a bulk action on every run is not one")
        }
    }

    func run() async throws {
        let (json, filter, ids, limit, yes, action) = (options.json, filter.json, runs, limit, yes, action)
        try await oneShot(options) { database, _ in
            guard yes else {
                let count = ids.isEmpty ? try await database.countRuns(filter: filter, action: action.rawValue)
                                        : RunCount(count: ids.count, capped: false)
                if json { return try printJSON(count) }
                let shown = count.capped ? "\(count.count) or more" : "\(count.count)"
                return print("\(shown) run(s) to \(action.rawValue); add --yes to do it (up to \(limit) a call)")
            }
            let result = try await database.bulkRuns(action.rawValue, ids: ids.isEmpty ? nil : ids, filter: filter, limit: limit)
            if json { return try printJSON(result) }
            print("\(action.rawValue): \(result.done) of \(result.selected) run(s)\(result.skipped > 0 ? ", \(result.skipped) skipped (not \(action == .retry ? "ended other than succeeded" : action == .cancel ? "in flight" : "ended"))" : "")")
            if let new = result.newRunIds, !new.isEmpty { print("new runs: \(new.map(String.init).joined(separator: " "))") }
            if result.more { print("the filter matches more: run it again for the next \(limit)") }
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Who changed what and when: jobs, runs started, cancelled and retried, bulk actions, config, pools, hooks.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "Only this job's entries (its name, even one renamed or deleted since).") var job: String?
    @Option(help: "Only this actor's entries: a token's name, an OS user, a database login.") var actor: String?
    @Option(help: "Only this action (job.pause, run.retry, runs.retry, config.set, …) or kind (job.).") var action: String?
    @Option(help: "How many (at most 1000).") var limit: Int = 50

    func run() async throws {
        let (json, job, actor, action, limit) = (options.json, job, actor, action, limit)
        try await oneShot(options) { database, _ in
            let entries = try await database.audit(job: job, actor: actor, action: action, limit: limit)
            if json { return try printJSON(entries) }
            guard !entries.isEmpty else { return print("no entries") }
            var table = TextTable("ID", "AT", "WHO", "VIA", "ACTION", "JOB", "RUN", "CHANGE")
            for entry in entries {
                let change = [entry.before.map { $0.compactText }, entry.after.map { $0.compactText }]
                    .map { $0 ?? "-" }.joined(separator: " -> ")
                table.append(["\(entry.id)", Display.time(entry.at), entry.actor, entry.via, entry.action, entry.jobName ?? "-",
                              entry.runId.map(String.init) ?? "-", String(change.prefix(120))])
            }
            print(table.render())
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
                    pool:       \(run.pool ?? "-")\(run.waitingForPool.map { " (waiting: no live worker serves pool '\($0)'; start one with `tock worker --pools \($0)`)" } ?? "")
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
            var table = TextTable("ID", "NAME", "STATE", "ALIVE", "POOLS", "CONCURRENCY", "RUNNING", "PROCESSED", "LAST HEARTBEAT", "STARTED")
            for worker in workers {
                table.append(["\(worker.id)", worker.name, worker.state,
                              worker.alive ? "yes" : (worker.state == "stopped" ? "no" : "STALE"),
                              (worker.pools ?? ["default"]).joined(separator: ","),
                              "\(worker.concurrency)", "\(worker.running)", "\(worker.runsProcessed)",
                              "\(Display.duration(worker.heartbeatAgeSeconds)) ago", Display.time(worker.startedAt)])
            }
            print(workers.isEmpty ? "no workers have registered: start one with `tock worker` or `tock up`" : table.render())
        }
    }
}

struct Queue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The queue: runs waiting by priority and pool, how many are ready, how long the oldest has waited, and pools no worker serves.")
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
            var table = TextTable("PRIORITY", "POOL", "WAITING", "READY", "DELAYED", "OLDEST READY WAITED", "WORKERS")
            for row in lag {
                table.append(["\(row.priority)", row.pool, "\(row.waiting)", "\(row.ready)", "\(row.delayed)",
                              row.ready > 0 ? Display.duration(row.oldestReadyAgeSeconds) : "-",
                              row.workersAlive > 0 ? "\(row.workersAlive)" : "NONE"])
            }
            if !lag.isEmpty { print(table.render()) }
            print("\(depth.pending) pending (\(depth.ready) ready, \(depth.delayed) delayed), \(depth.running) running; "
                + "oldest ready waited \(Display.duration(depth.oldestReadyAgeSeconds))")
            for pool in Set(lag.filter { $0.workersAlive == 0 }.map(\.pool)).sorted() {
                print("waiting for pool '\(pool)': no live worker serves it; start one with `tock worker --pools \(pool)`")
            }
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
