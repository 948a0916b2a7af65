import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import TockAPI
import TockCluster
import TockCore
import TockMetrics
import TockPostgres
import TockRuntime

struct APIOptions: ParsableArguments {
    @Option(help: "Address the JSON API listens on (default: TOCK_API_HOST or 127.0.0.1; beyond loopback needs TOCK_API_TOKENS).")
    var apiHost: String = ProcessInfo.processInfo.environment["TOCK_API_HOST"] ?? "127.0.0.1"

    @Option(help: "Port of the JSON API (default: TOCK_API_PORT or 8080).")
    var apiPort: Int = Int(ProcessInfo.processInfo.environment["TOCK_API_PORT"] ?? "") ?? 8080

    @Option(help: "Web origins besides the API's own whose pages may call it, e.g. https://tock.example.com behind a proxy (comma-separated; default: TOCK_ALLOWED_ORIGINS).")
    var allowedOrigins: String? = ProcessInfo.processInfo.environment["TOCK_ALLOWED_ORIGINS"]

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

struct WorkerOptions: ParsableArguments {
    @Option(help: "Scripts run at once (default: the number of cores).")
    var concurrency: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "The only directory scripts may run from.")
    var scriptsDir: String = "./scripts"

    @Option(help: "Seconds between safety sweeps for runs whose NOTIFY was missed (with `tock up`, the scheduler's re-plan too).")
    var sweepSeconds: Double = 60

    @Option(help: "Seconds between heartbeats.")
    var heartbeatSeconds: Double = 1

    @Option(help: "On SIGTERM/SIGINT, seconds running scripts may take before they are stopped and handed back.")
    var shutdownGraceSeconds: Double = 30

    @Option(help: "Seconds between SIGTERM and SIGKILL when a script times out or is cancelled.")
    var killGraceSeconds: Double = 5

    @Option(help: "Bytes of output kept per run (the last ones).")
    var outputCap: Int = 1 << 20

    @Option(help: "Run scripts as this user and its groups (a name or uid; the worker must be started as root).")
    var runAs: String?

    @Option(help: "How what a run starts is stopped at its end: auto (a cgroup v2 per run where one can be created, else subreaper), cgroup, or subreaper.")
    var containment: String = ScriptContainment.Preference.automatic.rawValue

    func validate() throws {
        guard ScriptContainment.Preference(rawValue: containment) != nil else {
            throw ValidationError("--containment: '\(containment)' is not auto, cgroup or subreaper")
        }
    }

    func configuration() throws(TockError) -> WorkerConfiguration {
        var configuration = WorkerConfiguration()
        configuration.concurrency = concurrency
        configuration.scriptsDirectory = scriptsDir
        configuration.sweepInterval = .milliseconds(Int64(sweepSeconds * 1000))
        configuration.heartbeatInterval = .milliseconds(Int64(heartbeatSeconds * 1000))
        configuration.shutdownGrace = .milliseconds(Int64(shutdownGraceSeconds * 1000))
        configuration.outputCapBytes = outputCap
        configuration.killGraceSeconds = killGraceSeconds
        // This executable, whatever it was started as (and even if a deploy has replaced the file since).
        configuration.guardExecutable = "/proc/self/exe"
        configuration.containment = ScriptContainment.Preference(rawValue: containment) ?? .automatic
        configuration.runAs = try runAs.map { user throws(TockError) in try ScriptCredentials.lookup(user) }
        return configuration
    }
}

struct MetricsOptions: ParsableArguments {
    @Option(help: "Serve this process's Prometheus metrics on this port at /metrics (the API also serves them at its own /metrics).")
    var metricsPort: Int?

    @Option(help: "Address of --metrics-port.")
    var metricsHost: String = "127.0.0.1"
}

/// Builds the services and runs them in one ServiceGroup until SIGTERM/SIGINT. The pool comes first: services
/// stop in reverse order, so workers drain before the pool closes.
func runServices(_ options: GlobalOptions, metricsOptions: MetricsOptions, createEmbedded: Bool, migrate: Bool,
                 build: (Database, ConnectionSettings, TockMetrics, Logger) throws(TockError) -> [any Service]) async throws {
    let logger = options.logger(label: "tock", defaultLevel: .info)
    do {
        let settings = try resolveSettings(options, logger: logger, createEmbedded: createEmbedded)
        // A wrong database, password or address is a mistake to report, not an outage to wait out: exit 5 with the
        // cause (systemd's Restart= retries a server that was merely down).
        do {
            try await withDatabase(settings, logger: logger) { database, _ in try await database.checkConnection() }
        } catch {
            logger.error("cannot start: PostgreSQL is unreachable or refuses this login", metadata: [
                "database": "\(settings.displayName)", "error": "\(TockError(from: error).message)"])
            throw error
        }
        if migrate {
            // A pool of its own: a PostgresClient runs once, and the services' pool runs in the group below.
            let client = PostgresClient(configuration: settings.clientConfiguration(maximumConnections: 2), backgroundLogger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                let report = try await Migrator(client: client, files: try SQLFiles.bundled(), logger: logger).migrate()
                if !report.applied.isEmpty { logger.info("migrated", metadata: ["applied": "\(report.applied)"]) }
            }
        }
        let serviceClient = PostgresClient(configuration: settings.clientConfiguration(), backgroundLogger: logger)
        var serviceDatabase = Database(client: serviceClient, logger: logger, settings: settings)
        // Every service query is small; one that takes longer means a lost connection, so fail and retry.
        serviceDatabase.callTimeout = .seconds(10)
        // One registry for the process: the worker's, the scheduler's and the API's figures print together.
        let metrics = TockMetrics()
        var services = try build(serviceDatabase, settings, metrics, logger)
        // Everything that needed them has read them (the settings, the API's tokens): scripts, and anything else
        // running as this user, cannot read them from this process.
        let forgotten = ProcessSecrets.forget()
        logger.debug("secrets removed from this process's environment", metadata: ["variables": "\(forgotten)"])
        if let port = metricsOptions.metricsPort {
            services.append(buildMetricsServer(metrics: metrics, host: metricsOptions.metricsHost, port: port, logger: logger))
        }
        logger.info("tock running", metadata: ["database": "\(settings.displayName)"])
        var configuration = ServiceGroupConfiguration(
            services: [.init(service: serviceClient)] + services.map { .init(service: $0) },
            logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        try await ServiceGroup(configuration: configuration).run()
    } catch let error as TockError {
        throw fail(error)
    } catch let error as PSQLError {
        throw fail(TockError(from: error))
    }
}

extension PostgresClient: @retroactive CustomStringConvertible {
    public var description: String { "PostgresClient" }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Migrate, then run a scheduler, a worker and the JSON API in one process (creates the embedded cluster when no database is configured).")

    @OptionGroup var options: GlobalOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var metrics: MetricsOptions
    @Flag(help: "Do not serve the JSON API.") var noAPI = false

    func run() async throws {
        try await runServices(options, metricsOptions: metrics, createEmbedded: true, migrate: true) {
            database, settings, metrics, logger throws(TockError) in
            [Scheduler(database: database, settings: settings, sweepInterval: .milliseconds(Int64(worker.sweepSeconds * 1000)),
                       metrics: metrics, logger: logger),
             try Worker(database: database, settings: settings, configuration: try worker.configuration(), metrics: metrics,
                        logger: logger)]
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
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false) {
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
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false) {
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
