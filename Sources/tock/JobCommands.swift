import ArgumentParser
import Foundation
import TockCLI
import TockCore
import TockPostgres
import TockRuntime

struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "job", abstract: "Create, change, run and remove jobs.",
        subcommands: [Add.self, List.self, Show.self, Edit.self, Run.self, Pause.self, Resume.self, Reset.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a job.", discussion: """
            Schedules: 'every 30s|5m|2h|1d', 'hourly at :15', 'daily at 06:00', 'weekly on mon,thu at 09:30',
            'monthly on 1 at 08:00' (29-31 and 'last' fire on a shorter month's last day), a 5-field cron
            expression ('*/15 * * * *', names such as MON and JAN), or 'manual' (run on demand only).
            """)

        @OptionGroup var options: GlobalOptions
        @Argument(help: "A unique name: a letter, then letters, digits, '.', '_' or '-'.") var name: String
        @Option(help: "The script, relative to the worker's scripts directory.") var script: String?
        @Option(name: .customLong("arg"), help: "An argument for the script (repeat for more; no shell is involved).")
        var args: [String] = []
        @OptionGroup var request: HTTPOptions
        @Option(help: "When it runs.") var schedule: String = "manual"
        @Option(help: "The IANA time zone the schedule is read in.") var timezone: String = "UTC"
        @Option(help: "0-100; higher runs first.") var priority: Int?
        @Option(help: "How long a run may take, e.g. 90s, 10m, 2h (default 1h).") var timeout: String?
        @Option(help: "Attempts per run (1 = no retry).") var maxAttempts: Int?
        @Option(help: "While a run is pending or running: skip, queue or allow another.") var overlap: String?
        @Option(help: "After downtime: run_once (one run for the missed fire times) or skip.") var misfire: String?
        @Option(help: "First retry delay, doubling per attempt (default 10s).") var retryBase: String?
        @Option(help: "Longest retry delay (default 10m).") var retryCap: String?
        @Option(help: "The pool whose workers run it (tock worker --pools; default: default).") var pool: String?
        @OptionGroup var limits: LimitOptions
        @Flag(help: "Create it paused.") var paused = false
        @Option(name: .customLong("param-def"), help: ArgumentHelp(
            "A parameter a run takes: name[:required][:default=VALUE][:choice=A,B][:pattern=REGEX] (repeat for more). The script gets TOCK_PARAM_<NAME>; {{name}} in an --arg is replaced by its value.",
            valueName: "spec"))
        var paramDefs: [String] = []
        @Option(help: "Free text for the people who run it.") var description: String?
        @Option(name: .customLong("env"), help: ArgumentHelp("A variable its script gets (repeat for more); not for secrets.", valueName: "name=value"))
        var env: [String] = []
        @Option(name: .customLong("secret"), help: ArgumentHelp(
            "A secret its script gets as a variable of that name, from each worker's --secrets-file (repeat for more).", valueName: "name"))
        var secrets: [String] = []
        @Option(help: "Check the script against this scripts directory now, when it exists here.")
        var scriptsDir: String = "./scripts"

        func run() async throws {
            var definition = JobDefinition(name: name, script: script ?? "", args: args, schedule: schedule, timezone: timezone)
            definition.script = script
            definition.description = description
            definition.priority = priority
            definition.maxAttempts = maxAttempts
            definition.overlap = overlap
            definition.pool = pool
            definition.enabled = !paused
            do {
                let limits = try limits.changes()
                if case .integer(let count) = limits["max_running"] { definition.maxRunning = count }
                if case .text(let rate) = limits["rate"] { definition.rate = rate }
                definition.timeoutSeconds = try timeout.map { seconds in try DurationText.seconds(seconds) }
                definition.retryBaseSeconds = try retryBase.map { text in try DurationText.seconds(text, field: "retry_base") }
                definition.retryCapSeconds = try retryCap.map { text in try DurationText.seconds(text, field: "retry_cap") }
                definition.misfire = misfire
                if !paramDefs.isEmpty { definition.params = try paramDefs.map(ParamSpec.definition) }
                if !env.isEmpty { definition.env = try ParamSpec.assignments(env, field: "env") }
                if !secrets.isEmpty { definition.secrets = secrets }
                definition.http = try request.spec()
                guard (script == nil) != (definition.http == nil) else {
                    throw TockError(.invalidInput, field: "script", "script: give --script PATH or --http 'METHOD URL', one of them")
                }
                if let script { try checkSandbox(script: script, scriptsDir: scriptsDir) }
            } catch let error as InputError {
                throw fail(TockError(error))
            } catch let error as TockError {
                throw fail(error)
            }
            let json = options.json
            try await oneShot(options) { [definition] database, _ in
                let id = try await database.createJob(definition)
                let job = try await database.job(String(id))
                if json { try printJSON(job) } else {
                    print("created job \(job.name) (id \(job.id)): \(job.scheduleDescription)"
                        + (job.nextRunAt.map { ", next run \(Display.time($0))" } ?? ""))
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every job with its schedule, next and last run.")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let json = options.json
            try await oneShot(options) { database, _ in
                let jobs = try await database.jobs()
                if json { return try printJSON(jobs) }
                var table = TextTable("NAME", "STATE", "SCHEDULE", "TIMEZONE", "NEXT RUN", "LAST RUN", "RUNNING")
                for job in jobs {
                    table.append([job.name, job.state, job.scheduleDescription, job.timezone, Display.time(job.nextRunAt),
                                  job.lastRunStatus.map { "\($0) \(Display.time(job.lastRunFinishedAt ?? job.lastRunStartedAt))" } ?? "-",
                                  "\(job.running)"])
                }
                print(jobs.isEmpty ? "no jobs yet: tock job add NAME --script PATH --schedule 'every 5m'" : table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One job, its next 5 fire times and recent runs.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String

        func run() async throws {
            let json = options.json
            let job = job
            try await oneShot(options) { database, _ in
                let info = try await database.job(job)
                let next = info.enabled ? try await database.nextFireTimes(schedule: info.schedule, timezone: info.timezone,
                                                                           after: info.nextRunAt.map { $0.addingTimeInterval(-0.001) } ?? Date(), count: 5) : []
                let runs = try await database.runs(job: String(info.id), limit: 10)
                if json {
                    struct Shown: Encodable { var job: JobInfo; var nextFireTimes: [Date]; var recentRuns: [RunInfo] }
                    return try printJSON(Shown(job: info, nextFireTimes: next, recentRuns: runs))
                }
                print("""
                    name:          \(info.name) (id \(info.id), \(info.state))
                    \(info.http == nil ? "script:        " : "http:          ")\(info.target)
                    schedule:      \(info.schedule)\(info.schedule == info.scheduleDescription ? "" : " — \(info.scheduleDescription)") (\(info.timezone))
                    priority:      \(info.priority)
                    timeout:       \(DurationText.format(seconds: info.timeoutSeconds))
                    max attempts:  \(info.maxAttempts) (retry after \(DurationText.format(seconds: info.retryBaseSeconds)), doubling up to \(DurationText.format(seconds: info.retryCapSeconds)))
                    misfire:       \(info.misfire)
                    overlap:       \(info.overlap)
                    pool:          \(info.pool ?? "default")
                    limits:        max running \(info.maxRunning.map(String.init) ?? "no limit"), rate \(info.rate ?? "no limit")
                    inherited:     \(info.inherited.isEmpty ? "nothing: every setting is its own" : info.inherited.joined(separator: ", ") + " (the fleet's defaults: tock config show)")
                    next runs:     \(next.isEmpty ? "-" : next.map(Display.time).joined(separator: "\n               "))
                    """)
                if let params = info.params, !params.isEmpty {
                    print("parameters:    " + params.map(Display.param).joined(separator: "\n               "))
                }
                if let env = info.env, !env.isEmpty {
                    print("env:           " + env.keys.sorted().map { "\($0)=\(env[$0] ?? "")" }.joined(separator: "\n               "))
                }
                if let secrets = info.secrets, !secrets.isEmpty {
                    print("secrets:       " + secrets.joined(separator: ", ") + " (from each worker's --secrets-file)")
                }
                if let description = info.description {
                    print("\n" + description)
                }
                if !runs.isEmpty {
                    print("\nrecent runs:")
                    print(RunsTable.render(runs))
                }
            }
        }
    }

    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a job's fields; the rest stay as they are.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String
        @Option(help: "A new name.") var name: String?
        @Option(help: "Run this script (an HTTP job becomes a script job).") var script: String?
        @Option(name: .customLong("arg"), help: "Replace the arguments (repeat for more).") var args: [String] = []
        @OptionGroup var request: HTTPOptions
        @Flag(help: "Remove every argument.") var clearArgs = false
        @Option var schedule: String?
        @Option var timezone: String?
        @Option var priority: Int?
        @Option var timeout: String?
        @Option var maxAttempts: Int?
        @Option var overlap: String?
        @Option var misfire: String?
        @Option(help: "Move it to another pool; its pending runs go with it.") var pool: String?
        @OptionGroup var limits: LimitOptions
        @Option(name: .customLong("inherit"),
                help: "Take this setting from the fleet's defaults again (tock config): max_attempts, timeout, retry_base, retry_cap, overlap or pool.")
        var inherit: [String] = []
        @Option(name: .customLong("param-def"), help: ArgumentHelp(
            "Replace the parameters: name[:required][:default=VALUE][:choice=A,B][:pattern=REGEX] (repeat for more).",
            valueName: "spec"))
        var paramDefs: [String] = []
        @Flag(help: "Remove every parameter.") var clearParams = false
        @Option(name: .customLong("env"), help: ArgumentHelp("Replace the variables (repeat for more).", valueName: "name=value"))
        var env: [String] = []
        @Flag(help: "Remove every variable.") var clearEnv = false
        @Option(name: .customLong("secret"), help: ArgumentHelp("Replace the secrets it needs (repeat for more).", valueName: "name"))
        var secrets: [String] = []
        @Flag(help: "It needs no secret.") var clearSecrets = false
        @Option(help: "A new description (\"\" removes it).") var description: String?
        @Option var scriptsDir: String = "./scripts"

        func run() async throws {
            var changes: [String: JobChange] = [:]
            do {
                if let name { changes["name"] = .text(name) }
                if let script {
                    try checkSandbox(script: script, scriptsDir: scriptsDir)
                    changes["script"] = .text(script)
                }
                if clearArgs || !args.isEmpty { changes["args"] = .list(args) }
                if let spec = try request.spec() { changes["http"] = .request(spec) }
                if let schedule { changes["schedule"] = .text(schedule) }
                if let timezone { changes["timezone"] = .text(timezone) }
                if let priority { changes["priority"] = .integer(priority) }
                if let timeout { changes["timeout"] = .text("\(try DurationText.seconds(timeout)) seconds") }
                if let maxAttempts { changes["max_attempts"] = .integer(maxAttempts) }
                if let overlap { changes["overlap"] = .text(overlap) }
                if let misfire { changes["misfire"] = .text(misfire) }
                if let pool { changes["pool"] = .text(pool) }
                if !paramDefs.isEmpty { changes["params"] = .params(try paramDefs.map(ParamSpec.definition)) }
                if clearParams { changes["params"] = JobChange.none }
                if !env.isEmpty { changes["env"] = .variables(try ParamSpec.assignments(env, field: "env")) }
                if clearEnv { changes["env"] = JobChange.none }
                if !secrets.isEmpty { changes["secrets"] = .list(secrets) }
                if clearSecrets { changes["secrets"] = JobChange.none }
                if let description { changes["description"] = description.isEmpty ? JobChange.none : .text(description) }
                changes.merge(try limits.changes()) { _, limit in limit }
                let keys = ["max_attempts": "max_attempts", "timeout": "timeout", "retry_base": "retry_base_seconds",
                            "retry_cap": "retry_cap_seconds", "overlap": "overlap", "pool": "pool"]
                for setting in inherit {
                    guard let key = keys[setting] else {
                        throw TockError(.invalidInput, field: "inherit",
                                        "inherit: '\(setting)' has no fleet default; give max_attempts, timeout, retry_base, retry_cap, overlap or pool")
                    }
                    changes[key] = JobChange.none
                }
            } catch let error as InputError {
                throw fail(TockError(error))
            } catch let error as TockError {
                throw fail(error)
            }
            guard !changes.isEmpty else {
                throw fail(TockError(.invalidInput, "nothing to change: give --schedule, --script, --arg, --timezone, …"))
            }
            let json = options.json
            let job = job
            try await oneShot(options) { [changes] database, _ in
                let id = try await database.updateJob(job, changes: changes)
                let info = try await database.job(String(id))
                if json { try printJSON(info) } else {
                    print("updated job \(info.name): \(info.scheduleDescription)"
                        + (info.nextRunAt.map { ", next run \(Display.time($0))" } ?? ""))
                }
            }
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a job now; prints the run id at once.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String
        @Flag(help: "Wait for the run to finish, print its output and exit with its status.") var wait = false
        @Option(help: "With --wait: give up after this many seconds.") var waitTimeout: Double = 3600
        @Option(help: "Run once per key: the same key for this job within 24 hours gives the first run's id and enqueues nothing (a retried command starts one run).")
        var key: String?
        @Option(name: .customLong("param"), help: ArgumentHelp(
            "A value for one of the job's parameters (repeat for more); the others take their defaults.", valueName: "name=value"))
        var params: [String] = []

        func run() async throws {
            let json = options.json
            let values: String?
            do {
                values = try ParamSpec.values(params)
            } catch {
                throw fail(TockError(error))
            }
            let (job, wait, waitTimeout, key) = (job, wait, waitTimeout, key)
            let status = try await oneShot(options) { database, _ -> String in
                let triggered = try await database.runNow(job, trigger: "manual", key: key, params: values)
                let id = triggered.runId
                guard wait else {
                    if json {
                        try printJSON(triggered)
                    } else if triggered.replayed {
                        print("run \(id) was already started by key '\(key ?? "")' within 24 hours: tock run show \(id)")
                    } else {
                        print("run \(id) enqueued: tock run show \(id)")
                    }
                    return "succeeded"
                }
                let deadline = Date().addingTimeInterval(waitTimeout)
                var run = try await database.run(id, withOutput: false)
                while !(RunStatus(rawValue: run.status)?.isFinal ?? true) {
                    guard Date() < deadline else {
                        throw TockError(.failed, "run \(id) is still \(run.status) after \(Int(waitTimeout))s")
                    }
                    try await Task.sleep(for: .milliseconds(50))
                    run = try await database.run(id, withOutput: false)
                }
                run = try await database.run(id, withOutput: true)
                if json { try printJSON(run) } else {
                    print(run.output ?? "", terminator: (run.output ?? "").hasSuffix("\n") || (run.output ?? "").isEmpty ? "" : "\n")
                    FileHandle.standardError.write(Data("run \(id) \(run.status)\(run.error.map { ": \($0)" } ?? "")\n".utf8))
                }
                return run.status
            }
            if status != "succeeded" { throw ExitCode(1) }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a job's schedule (run-now still works).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String
        func run() async throws {
            let job = job
            try await oneShot(options) { database, _ in
                try await database.setJobEnabled(job, false)
                print("paused \(job)")
            }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restart a job's schedule from now (missed fire times are not replayed).")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String
        func run() async throws {
            let job = job
            try await oneShot(options) { database, _ in
                try await database.setJobEnabled(job, true)
                let info = try await database.job(job)
                print("resumed \(info.name)" + (info.nextRunAt.map { ", next run \(Display.time($0))" } ?? ""))
            }
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clear a stuck job: end its stuck runs (failed, no retry) and move its schedule to the next fire time from now.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String
        func run() async throws {
            let (job, json) = (job, options.json)
            try await oneShot(options) { database, _ in
                let reset = try await database.resetJob(job)
                if json { return try printJSON(reset) }
                let ended = reset.runsEnded.isEmpty ? "no stuck runs"
                    : "ended stuck run(s) \(reset.runsEnded.map(String.init).joined(separator: ", ")) as failed"
                print("reset \(job): \(ended); next run \(Display.time(reset.nextRunAt))")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a job and its run history.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job's name or id.") var job: String
        func run() async throws {
            let job = job
            try await oneShot(options) { database, _ in
                try await database.deleteJob(job)
                print("deleted \(job)")
            }
        }
    }
}

/// `tock job add/edit` refuse a script that leaves the scripts directory, when that directory is visible here.
/// An HTTP job's request on the command line: `--http 'POST https://…' [--header K:V] [--body TEXT|@FILE] [--expect 2xx]`.
struct HTTPOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Instead of a script, send this request: 'POST https://api.example.com/refresh' (the method may be left out: POST).",
                               valueName: "method url"))
    var http: String?
    @Option(name: .customLong("header"), help: ArgumentHelp("With --http: a header (repeat for more); {{secret.NAME}} takes a --secret's value.",
                                                            valueName: "name:value"))
    var headers: [String] = []
    @Option(help: ArgumentHelp("With --http: the body, or @FILE to read it from a file.", valueName: "text|@file"))
    var body: String?
    @Option(help: ArgumentHelp("With --http: the statuses that count as success (default 2xx): 2xx, 200,204, 2xx,304.", valueName: "statuses"))
    var expect: String?

    /// The request (nil without --http); the rules are tock.checked_http's.
    func spec() throws(TockError) -> HTTPRequestSpec? {
        guard let http else {
            guard headers.isEmpty, body == nil, expect == nil else {
                throw TockError(.invalidInput, field: "http", "http: --header, --body and --expect go with --http 'METHOD URL'")
            }
            return nil
        }
        let parts = http.split(separator: " ", omittingEmptySubsequences: true)
        guard (1...2).contains(parts.count) else {
            throw TockError(.invalidInput, field: "http", "http: '\(http.prefix(100))' is not 'METHOD URL' or 'URL'")
        }
        var spec = HTTPRequestSpec(method: parts.count == 2 ? String(parts[0]).uppercased() : nil, url: String(parts.last!))
        var fields: [String: String] = [:]
        for header in headers {
            guard let colon = header.firstIndex(of: ":"), colon != header.startIndex else {
                throw TockError(.invalidInput, field: "http", "http: header '\(header.prefix(100))' is not name:value")
            }
            fields[String(header[..<colon])] = String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        }
        spec.headers = fields.isEmpty ? nil : fields
        if let body, body.hasPrefix("@") {
            let path = String(body.dropFirst())
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw TockError(.invalidInput, field: "http", "http: cannot read the body from \(path)")
            }
            spec.body = text
        } else {
            spec.body = body
        }
        spec.expect = expect
        return spec
    }
}

func checkSandbox(script: String, scriptsDir: String) throws {
    try ScriptPath.validate(script)
    guard let sandbox = try? ScriptSandbox(directory: scriptsDir) else { return }
    do {
        _ = try sandbox.resolve(script)
    } catch where error.message.contains("outside") {
        throw error
    } catch {
        FileHandle.standardError.write(Data("warning: \(error.message)\n".utf8))
    }
}

