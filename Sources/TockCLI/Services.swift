import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import TockAPI
import TockCore
import TockMetrics
import TockPostgres
import TockRuntime

/// A worker's options: `tock worker`, `tock up` and `tock-bench worker` take the same ones.
public struct WorkerOptions: ParsableArguments {
    public init() {}

    @Option(help: "A name for this worker that stays the same across its restarts, in tock.workers, logs and the portal (default: host:pid); a live worker's name is refused.")
    public var name: String?

    @Option(help: "The pools whose runs this worker claims, comma separated, e.g. etl,reports (a job's --pool).")
    public var pools: String = "default"

    @Option(help: "Scripts run at once (default: the number of cores).")
    public var concurrency: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "The only directory scripts may run from.")
    public var scriptsDir: String = "./scripts"

    @Option(help: "Seconds between safety sweeps for runs whose NOTIFY was missed (with `tock up`, the scheduler's re-plan too).")
    public var sweepSeconds: Double = 60

    @Option(help: "Seconds between heartbeats.")
    public var heartbeatSeconds: Double = 1

    @Option(help: "On SIGTERM/SIGINT, seconds running scripts may take before they are stopped and handed back.")
    public var shutdownGraceSeconds: Double = 30

    @Option(help: "Seconds between SIGTERM and SIGKILL when a script times out or is cancelled.")
    public var killGraceSeconds: Double = 5

    @Option(help: "Bytes of output kept per run (the last ones).")
    public var outputCap: Int = 1 << 20

    @Option(help: "Run scripts as this user and its groups (a name or uid; the worker must be started as root).")
    public var runAs: String?

    @Option(help: "How what a run starts is stopped at its end: auto (a cgroup v2 per run where one can be created, else subreaper), cgroup, or subreaper.")
    public var containment: String = ScriptContainment.Preference.automatic.rawValue

    @Option(help: "NAME=value lines (mode 600, this user's) holding the secrets jobs may name (tock job add --secret NAME); their values are masked in output.")
    public var secretsFile: String?

    @Option(help: "The hosts HTTP jobs may send requests to, comma separated: api.example.com, *.example.com, 10.0.0.5, or * (none: HTTP jobs fail here, saying so).")
    public var httpAllow: String = ""

    public func validate() throws {
        guard ScriptContainment.Preference(rawValue: containment) != nil else {
            throw ValidationError("--containment: '\(containment)' is not auto, cgroup or subreaper")
        }
    }

    public func configuration() throws(TockError) -> WorkerConfiguration {
        var configuration = WorkerConfiguration()
        configuration.name = name
        configuration.pools = pools.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
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
        configuration.secrets = try secretsFile.map { path throws(TockError) in try SecretsFile.load(path) }
        configuration.httpAllow = try HostAllowList(httpAllow, field: "http-allow")
        return configuration
    }
}

/// A service process's own Prometheus endpoint.
public struct MetricsOptions: ParsableArguments {
    public init() {}

    @Option(help: "Serve this process's Prometheus metrics on this port at /metrics (the API also serves them at its own /metrics).")
    public var metricsPort: Int?

    @Option(help: "Address of --metrics-port.")
    public var metricsHost: String = "127.0.0.1"
}

/// Builds the services and runs them in one ServiceGroup until SIGTERM/SIGINT. The pool comes first: services
/// stop in reverse order, so workers drain before the pool closes.
/// `connections`: the most the services' pool opens (it opens them as calls need them, and closes those idle for a
/// minute); the LISTEN connections are apart from it.
public func runServices(_ options: GlobalOptions, metricsOptions: MetricsOptions, createEmbedded: Bool, migrate: Bool,
                        connections: Int = 20,
                        build: (Database, ConnectionSettings, TockMetrics, Logger) throws(TockError) -> [any Service]) async throws {
    let logger = options.logger(label: "tock", defaultLevel: .info)
    do {
        var settings = try resolveSettings(options, logger: logger, createEmbedded: createEmbedded)
        // A wrong database, password or address is a mistake to report, not an outage to wait out: exit 5 with the
        // cause (systemd's Restart= retries a server that was merely down). A server with no connection free, or
        // still starting, is waited out with backoff: a fleet that outgrew max_connections starts as connections
        // free up, every process saying why it waits.
        var backoff = RetryBackoff(initial: .seconds(1), maximum: .seconds(30))
        while true {
            do {
                if settings.followsPrimary { settings = try await findPrimary(settings, logger: logger) }
                try await withDatabase(settings, logger: logger) { database, _ in try await database.checkConnection() }
                break
            } catch {
                let failure = TockError(from: error)
                let message = failure.message
                // Every server named read-only or out of reach: a failover under way, waited out like a full server.
                let failingOver = settings.followsPrimary && message.contains("accepts writes yet")
                // A server that did not answer in time: with every connection taken, the refusal itself can take
                // longer than the call (30 workers against max_connections 25, fault 12, once waited 30 s and exited).
                let silent = failure.kind == .unavailable && message.contains("did not answer within")
                if failure.waitsOut || failingOver || silent {
                    let wait = backoff.next()
                    logger.warning(failingOver ? "no server accepts writes yet; trying again"
                                   : silent ? "PostgreSQL did not answer in time; trying again"
                                   : "PostgreSQL has no connection for this process now; trying again", metadata: [
                        "database": "\(settings.displayName)", "error": "\(message)", "retry_in": "\(wait)"])
                    try await Task.sleep(for: wait)
                    continue
                }
                logger.error("cannot start: PostgreSQL is unreachable or refuses this login", metadata: [
                    "database": "\(settings.displayName)", "error": "\(message)"])
                throw error
            }
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
        let configure = { @Sendable (settings: ConnectionSettings) in
            var clientConfiguration = settings.clientConfiguration(maximumConnections: connections)
            // One kept open for good: a process that got in keeps a connection for its heartbeats and reports when
            // the server has none to spare (max_connections reached), rather than closing it when idle and queueing.
            clientConfiguration.options.minimumConnections = 1
            // postgres-nio's pool, once opening a connection has failed (max_connections reached), queues every call
            // until an open succeeds, its idle connections included: with the server full, for minutes. A finished
            // keep-alive hands an idle connection to the calls queued, so one every second bounds that wait to a
            // second (fault 12: 30 workers against max_connections 25 once ran none of 60 runs in 4 minutes).
            clientConfiguration.options.keepAliveBehavior = .init(frequency: .seconds(1))
            return clientConfiguration
        }
        // Several servers: the pool follows the one that accepts writes.
        let pool: any Service
        var serviceDatabase: Database
        if settings.followsPrimary {
            let primary = PrimaryClient(settings: settings, logger: logger, configure: configure)
            (pool, serviceDatabase) = (primary, Database(primary: primary, logger: logger))
        } else {
            let client = PostgresClient(configuration: configure(settings), backgroundLogger: logger)
            (pool, serviceDatabase) = (client, Database(client: client, logger: logger, settings: settings))
        }
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
            services: [.init(service: pool)] + services.map { .init(service: $0) },
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
