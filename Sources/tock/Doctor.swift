import ArgumentParser
import Foundation
import PostgresNIO
import TockCLI
import TockCore
import TockPostgres
import TockRuntime

/// `tock doctor`: checks what a deployment needs, one line each, and says what to fix. Exits 1 when a check
/// fails (Tock cannot work); warnings (no worker alive, stuck runs) leave it at 0.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the connection, migrations, roles, clocks, NOTIFY round trip, workers and schedulers; print what to fix.")
    @OptionGroup var options: GlobalOptions

    struct Check: Encodable {
        enum Level: String, Encodable { case ok, warn, fail }
        var name: String
        var level: Level
        var detail: String
        var fix: String?
    }

    func run() async throws {
        let logger = options.logger(label: "tock", defaultLevel: .warning)
        var checks: [Check] = []
        var reached = false
        do {
            let settings = try resolveSettings(options, logger: logger, createEmbedded: false)
            checks = try await withDatabase(settings, logger: logger) { database, client in
                try await database.checkConnection()
                return await Self.checks(database, client: client)
            }
            reached = true
        } catch {
            let tock = TockError(from: error)
            checks = [Check(name: "connection", level: .fail, detail: tock.message,
                            fix: "set DATABASE_URL (postgres://user@host:5432/db) or run `tock up` for the embedded cluster")]
        }
        if options.json {
            try printJSON(checks)
        } else {
            for check in checks {
                let mark = switch check.level { case .ok: "ok  "; case .warn: "WARN"; case .fail: "FAIL" }
                print("\(mark)  \(check.name.padding(toLength: 12, withPad: " ", startingAt: 0))  \(check.detail)")
                if let fix = check.fix { print("      \(String(repeating: " ", count: 12))  fix: \(fix)") }
            }
        }
        // Like every command: 5 when PostgreSQL cannot be reached or refuses the login; 1 for any other failure.
        if !reached { throw ExitCode(5) }
        if checks.contains(where: { $0.level == .fail }) { throw ExitCode(1) }
    }

    static func checks(_ database: Database, client: PostgresClient) async -> [Check] {
        var checks: [Check] = []
        let before = Date()
        let facts: ServerFacts
        do {
            facts = try await database.serverFacts()
        } catch {
            let missing = error.kind == .unavailable && error.message.contains("migrate")
            return [Check(name: "connection", level: missing ? .ok : .fail,
                          detail: missing ? "connected as \(database.settings?.displayName ?? "-")" : error.message),
                    Check(name: "migrations", level: .fail, detail: missing ? "Tock's schema is missing" : "not checked",
                          fix: "run `tock migrate` (or `tock migrate --dry-run` to review the SQL first)")]
        }
        let after = Date()
        checks.append(Check(name: "connection", level: .ok, detail:
            "\(facts.user)@\(facts.database) on PostgreSQL \(facts.version)\(facts.superuser ? " (superuser)" : ""), "
            + "\(Int(after.timeIntervalSince(before) * 1000)) ms"))

        do {
            let plan = try await Migrator(client: client, files: try SQLFiles.bundled(), logger: database.logger).plan()
            checks.append(plan.isEmpty
                ? Check(name: "migrations", level: .ok, detail: "current")
                : Check(name: "migrations", level: .fail, detail: "pending: \(plan.map(\.name).joined(separator: ", "))",
                        fix: "run `tock migrate` (review with `tock migrate --dry-run`)"))
        } catch {
            checks.append(Check(name: "migrations", level: .fail, detail: TockError(from: error).message))
        }

        let missing = facts.roles.filter { !$0.exists }.map(\.name)
        let memberships = facts.roles.filter(\.member).map(\.name)
        if !missing.isEmpty {
            checks.append(Check(name: "roles", level: .warn, detail: "missing: \(missing.joined(separator: ", "))",
                fix: missing.map { "CREATE ROLE \($0) NOLOGIN;" }.joined(separator: " ")
                    + " then, as the schema owner, SELECT tock.apply_privileges();"))
        } else {
            let who = facts.superuser ? "a superuser (can do everything; give services their own roles)"
                : memberships.isEmpty ? "the schema owner or a role outside Tock's three"
                : "a member of \(memberships.joined(separator: ", "))"
            checks.append(Check(name: "roles", level: .ok, detail: "tock_admin, tock_worker, tock_viewer exist; \(facts.user) is \(who)"))
        }

        // The server's clock against this machine's, from the midpoint of the round trip.
        let skew = facts.now.timeIntervalSince(before.addingTimeInterval(after.timeIntervalSince(before) / 2))
        checks.append(abs(skew) < 1
            ? Check(name: "clocks", level: .ok, detail: String(format: "server and this machine agree within %.0f ms", abs(skew) * 1000))
            : Check(name: "clocks", level: .warn, detail: String(format: "the server's clock is %.1f s %@ this machine's", abs(skew), skew > 0 ? "ahead of" : "behind"),
                    fix: "run NTP (chrony or systemd-timesyncd) on both: schedules fire by the server's clock, logs use this one's"))

        do {
            if let trip = try await database.notifyRoundTrip() {
                let ms = Double(trip.components.attoseconds) / 1e15 + Double(trip.components.seconds) * 1000
                checks.append(Check(name: "notify", level: .ok, detail: String(format: "LISTEN/NOTIFY round trip %.1f ms", ms)))
            } else {
                checks.append(Check(name: "notify", level: .fail, detail: "a NOTIFY did not arrive within 3 s",
                    fix: "connect workers and schedulers directly or through PgBouncer in session mode; in transaction "
                        + "mode LISTEN does not work and Tock falls back to polling every second"))
            }
        } catch {
            checks.append(Check(name: "notify", level: .fail, detail: error.message))
        }

        do {
            let workers = try await database.workers()
            let alive = workers.filter(\.alive)
            let stale = workers.filter { !$0.alive && ($0.state == "running" || $0.state == "stopping") }
            if alive.isEmpty {
                checks.append(Check(name: "workers", level: .warn, detail: "no worker is alive: runs will wait",
                                    fix: "start one: `tock worker --scripts-dir DIR` (or `tock up`)"))
            } else {
                checks.append(Check(name: "workers", level: .ok, detail:
                    "\(alive.count) alive (\(alive.map(\.name).joined(separator: ", ")))"))
            }
            if !stale.isEmpty {
                checks.append(Check(name: "workers", level: .warn,
                    detail: "stale (no heartbeat): \(stale.map { "\($0.name) \(Display.duration($0.heartbeatAgeSeconds)) ago" }.joined(separator: ", "))",
                    fix: "a running scheduler marks them lost and retries their runs within seconds; start `tock scheduler` if none runs"))
            }
            checks += scriptChecks(workers: alive)
            let schedulers = try await database.schedulersAlive()
            checks.append(schedulers > 0
                ? Check(name: "schedulers", level: .ok, detail: "\(schedulers) connected")
                : Check(name: "schedulers", level: .warn, detail: "none connected: schedules will not fire and lost workers' runs stay stuck",
                        fix: "start `tock scheduler` (or `tock up`)"))
            let stuck = try await database.stuckRuns()
            checks.append(stuck.isEmpty
                ? Check(name: "runs", level: .ok, detail: "no stuck runs")
                : Check(name: "runs", level: .warn, detail: "\(stuck.count) stuck (first: run \(stuck[0].runId) of \(stuck[0].jobName), \(stuck[0].reason))",
                        fix: "`tock runs --stuck` lists them; `tock job reset JOB` clears a job"))
            let unserved = try await database.unservedPools()
            checks.append(unserved.isEmpty
                ? Check(name: "pools", level: .ok, detail: "every pool with jobs has a live worker")
                : Check(name: "pools", level: .warn,
                        detail: "no live worker serves " + unserved.map { "\($0.pool) (\($0.jobs) jobs, \($0.pending) runs waiting)" }
                            .joined(separator: ", ") + ": their runs wait",
                        fix: "start a worker with `tock worker --pools \(unserved.map(\.pool).joined(separator: ","))`, or move the jobs (`tock job edit NAME --pool POOL`)"))
            let depth = try await database.queueDepth()
            checks.append(depth.oldestReadyAgeSeconds < 60
                ? Check(name: "queue", level: .ok, detail: "\(depth.ready) ready, \(depth.running) running; oldest ready waited \(Display.duration(depth.oldestReadyAgeSeconds))")
                : Check(name: "queue", level: .warn, detail: "the oldest ready run has waited \(Display.duration(depth.oldestReadyAgeSeconds))",
                        fix: "add workers or concurrency (`tock queue` shows the backlog by priority)"))
        } catch {
            checks.append(Check(name: "workers", level: .fail, detail: error.message))
        }
        if checks.allSatisfy({ $0.name != "containment" }) { checks += scriptChecks(workers: []) }
        if let days = facts.retentionDays {
            checks.append(Check(name: "retention", level: .ok, detail: String(format: "finished runs are kept %.3g days", days)))
        }
        return checks
    }

    /// How the live workers on this host contain their scripts and which user runs them (read from /proc: a worker
    /// elsewhere is checked by `tock doctor` there); with none here, what a worker started here would use.
    static func scriptChecks(workers: [WorkerInfo]) -> [Check] {
        let host = ProcessInfo.processInfo.hostName
        let local = workers.filter { $0.host == host && kill(pid_t($0.pid), 0) == 0 }
        guard !local.isEmpty else {
            let (mode, detail) = ScriptContainment.probe()
            return [Check(name: "containment", level: mode == .cgroup ? .ok : .warn,
                          detail: "no worker runs on this host; one started here would use \(detail)",
                          fix: mode == .cgroup ? nil : containmentFix)]
        }
        var checks: [Check] = []
        for worker in local {
            let commandLine = String(decoding: FileManager.default.contents(atPath: "/proc/\(worker.pid)/cmdline") ?? Data(),
                                     as: UTF8.self).split(separator: "\0").map(String.init)
            let cgroup = ScriptContainment.workerCgroup(pid: pid_t(worker.pid))
            checks.append(cgroup != nil
                ? Check(name: "containment", level: .ok,
                        detail: "worker \(worker.name): a cgroup v2 per run under \(cgroup!), killed whole at the run's end")
                : Check(name: "containment", level: .warn,
                        detail: "worker \(worker.name): a subreaper supervisor per run ("
                            + (commandLine.contains("subreaper") ? "--containment subreaper)" : "no cgroup v2 it could create)"),
                        fix: containmentFix))
            let runAs = commandLine.firstIndex(of: "--run-as").flatMap { commandLine.indices.contains($0 + 1) ? commandLine[$0 + 1] : nil }
                ?? commandLine.first { $0.hasPrefix("--run-as=") }.map { String($0.dropFirst("--run-as=".count)) }
            let uid = processUID(worker.pid)
            if let runAs {
                checks.append(Check(name: "scripts", level: .ok, detail: "worker \(worker.name) runs scripts as \(runAs)"))
            } else if uid == 0 {
                checks.append(Check(name: "scripts", level: .warn,
                    detail: "worker \(worker.name) runs scripts as root: a script can read and change everything on this host",
                    fix: "start it with --run-as USER (an unprivileged user that can read the scripts), or as that user"))
            } else {
                checks.append(Check(name: "scripts", level: .ok,
                    detail: "worker \(worker.name) runs scripts as its own user (uid \(uid.map(String.init) ?? "?"))"))
            }
        }
        return checks
    }

    static let containmentFix = """
        a script's processes are still stopped at its end, but a supervisor killed by the OOM killer, or by a script \
        running as the worker's user, lets them escape: give the worker a cgroup v2 it may create cgroups in (systemd: \
        Delegate=yes, and ProtectControlGroups=no)
        """

    /// The real uid of `pid` (/proc/PID/status, readable for any process).
    static func processUID(_ pid: Int) -> uid_t? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { uid_t($0) }
    }
}
