import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import TockAPI
import TockCLI
import TockCluster
import TockCore
import TockMetrics
import TockNotify
import TockPostgres
import TockRuntime

struct APIOptions: ParsableArguments {
    @Option(help: "Address the JSON API listens on (beyond loopback needs TOCK_API_TOKENS).")
    var apiHost: String = "127.0.0.1"

    @Option(help: "Port of the JSON API.")
    var apiPort: Int = 8080

    @Option(help: "Web origins besides the API's own whose pages may call it, e.g. https://tock.example.com behind a proxy (comma-separated).")
    var allowedOrigins: String?

    func validate() throws {
        do {
            _ = try APIAccess.parseOrigins(allowedOrigins)
        } catch {
            throw ValidationError("\(error.field): \(error.message)")
        }
    }

    func services(database: Database, settings: ConnectionSettings, metrics: TockMetrics,
                  logger: Logger) throws(TockError) -> [any Service] {
        var access: APIAccess
        do {
            access = try APIAccess.parse(ProcessInfo.processInfo.environment["TOCK_API_TOKENS"])
            access.allowedOrigins = try APIAccess.parseOrigins(allowedOrigins)
        } catch {
            throw TockError(error)
        }
        return try buildAPIServices(database: database, settings: settings, host: apiHost, port: apiPort, access: access,
                                    metrics: metrics, logger: logger)
    }
}

/// The delivery service's options (tock notifier, tock up).
struct NotifierOptions: ParsableArguments {
    @Option(help: """
        Hosts webhooks may be sent to, comma separated: hooks.slack.com, *.example.com, 10.0.0.5, or * for any \
        (default: none, and each delivery fails saying so).
        """)
    var webhookAllow: String = ""

    @Option(help: "Webhooks sent at once.")
    var webhookConcurrency: Int = 8

    @Option(help: "How long a webhook's receiver may take to answer, in seconds.")
    var webhookTimeoutSeconds: Int = 10

    func validate() throws {
        guard (1...100).contains(webhookConcurrency) else { throw ValidationError("--webhook-concurrency: 1 to 100") }
        guard (1...300).contains(webhookTimeoutSeconds) else { throw ValidationError("--webhook-timeout-seconds: 1 to 300") }
        do {
            _ = try HostAllowList(webhookAllow)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func service(database: Database, settings: ConnectionSettings, logger: Logger) throws(TockError) -> Notifier {
        var configuration = NotifierConfiguration(allow: try HostAllowList(webhookAllow))
        configuration.concurrency = webhookConcurrency
        configuration.timeout = .seconds(webhookTimeoutSeconds)
        // A hold well past the timeout: a delivery is sent again only when its sender is surely gone.
        configuration.hold = .seconds(max(15, webhookTimeoutSeconds * 3))
        return Notifier(database: database, settings: settings, configuration: configuration, logger: logger)
    }
}

struct NotifierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "notifier",
        abstract: "Send webhook deliveries (tock hook): any number may run at once; tock up runs one too.")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var notifier: NotifierOptions
    @OptionGroup var metrics: MetricsOptions

    func run() async throws {
        // A claim and a finish per delivery at once.
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false,
                              connections: min(20, notifier.webhookConcurrency + 2)) {
            database, settings, _, logger throws(TockError) in
            [try notifier.service(database: database, settings: settings, logger: logger)]
        }
    }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Migrate, then run a scheduler, a worker and the JSON API in one process (creates the embedded cluster when no database is configured).")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var notifier: NotifierOptions
    @OptionGroup var metrics: MetricsOptions
    @Flag(help: "Do not serve the JSON API.") var noAPI = false

    func run() async throws {
        try await runServices(options, metricsOptions: metrics, createEmbedded: true, migrate: true) {
            database, settings, metrics, logger throws(TockError) in
            [Scheduler(database: database, settings: settings, sweepInterval: .milliseconds(Int64(worker.sweepSeconds * 1000)),
                       metrics: metrics, logger: logger),
             try Worker(database: database, settings: settings, configuration: try worker.configuration(), metrics: metrics,
                        logger: logger),
             try notifier.service(database: database, settings: settings, logger: logger)]
                + (noAPI ? [] : try api.services(database: database, settings: settings, metrics: metrics, logger: logger))
        }
    }
}

struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "api",
        abstract: "Serve the JSON API (/api/v1/…): jobs, runs, run-now, cancel, retry, dead letters, workers, health.")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var metrics: MetricsOptions

    func run() async throws {
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false) {
            database, settings, metrics, logger throws(TockError) in
            try api.services(database: database, settings: settings, metrics: metrics, logger: logger)
        }
    }
}

struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scheduler",
        abstract: "Turn due schedules into runs (any number may run at once).")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var metrics: MetricsOptions

    @Option(help: "Longest sleep between ticks: a safety re-plan for a NOTIFY on tock_jobs that was missed.")
    var sweepSeconds: Double = 60

    func validate() throws {
        guard sweepSeconds >= 0.1 && sweepSeconds <= 86400 else {
            throw ValidationError("--sweep-seconds: \(sweepSeconds) is out of range 0.1-86400")
        }
    }

    func run() async throws {
        // Its calls come one at a time (tick, rescue, purge), but for the maintenance beside them.
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false, connections: 3) {
            database, settings, metrics, logger throws(TockError) in
            [Scheduler(database: database, settings: settings, sweepInterval: .milliseconds(Int64(sweepSeconds * 1000)),
                       metrics: metrics, logger: logger)]
        }
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker",
        abstract: "Claim runs and run their scripts in the sandbox.")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var metrics: MetricsOptions

    func run() async throws {
        // At once: a claim, a heartbeat, a report of finished runs, a look at cancel requests, and output reports of
        // its running scripts (each at most one at a time). A fleet of many workers must fit max_connections.
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false,
                              connections: min(20, worker.concurrency + 4)) {
            database, settings, metrics, logger throws(TockError) in
            [try Worker(database: database, settings: settings, configuration: try worker.configuration(), metrics: metrics,
                        logger: logger)]
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending migrations and changed functions (safe to run concurrently; a no-op when current).")

    @OptionGroup var options: GlobalOptions

    @Flag(help: """
        Print, as a psql script, exactly what would run (each step with the row that records it), and change \
        nothing. A DBA may apply it with `psql -v ON_ERROR_STOP=1 -f FILE`; `tock migrate` then finds nothing to do.
        """)
    var dryRun = false

    func run() async throws {
        let json = options.json
        let dryRun = dryRun
        try await oneShot(options) { database, client in
            let migrator = Migrator(client: client, files: try SQLFiles.bundled(), logger: database.logger)
            if dryRun {
                print(migrator.script(try await migrator.plan()), terminator: "")
                return
            }
            let report = try await migrator.migrate()
            if json {
                try printJSON(["applied": report.applied, "recorded": report.recorded,
                               "functions": report.functionsApplied ? ["applied"] : []])
            } else {
                for name in report.recorded { print("recorded \(name) (it was applied without a record)") }
                for name in report.applied { print("applied \(name)") }
                if report.upToDate { print("up to date") }
                if report.functionsApplied { print("applied functions and views") }
            }
        }
    }
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster",
        abstract: "Manage the embedded PostgreSQL cluster (used by ops/up and ops/test).",
        subcommands: [Start.self, Stop.self, URL.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create (if needed) and start it; print its DATABASE_URL.")
        @OptionGroup var options: GlobalOptions
        func run() async throws {
            let logger = options.logger(label: "tock", defaultLevel: .warning)
            do {
                print(try EmbeddedCluster(directory: options.homeDirectory, logger: logger).start().url())
            } catch {
                throw fail(error)
            }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop it (fast shutdown).")
        @OptionGroup var options: GlobalOptions
        func run() async throws {
            do {
                try EmbeddedCluster(directory: options.homeDirectory, logger: options.logger(label: "tock", defaultLevel: .warning)).stop()
            } catch {
                throw fail(error)
            }
        }
    }

    struct URL: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "url", abstract: "Print its DATABASE_URL.")
        @OptionGroup var options: GlobalOptions
        func run() async throws {
            print(EmbeddedCluster(directory: options.homeDirectory, logger: options.logger(label: "tock", defaultLevel: .warning))
                .settings().url())
        }
    }
}

/// The script guard a worker starts beside itself (see ScriptGuard); not for running by hand.
struct GuardScripts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guard-scripts",
        abstract: "Stops a dead worker's scripts (started by `tock worker`, reading fd 3).",
        shouldDisplay: false)

    @Option(help: "Milliseconds between SIGTERM and SIGKILL.")
    var graceMs: Int = 5000

    @Option(help: "The worker's cgroup directory (cgroup containment): killed whole, then removed.")
    var cgroup: String?

    func run() throws {
        guard ScriptGuard.runGuard(graceMilliseconds: graceMs, cgroup: cgroup) >= 0 else {
            throw ValidationError("guard-scripts is started by `tock worker`, with its socket on fd 3 and the shared memory on fd 4")
        }
    }
}
