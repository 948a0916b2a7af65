import Foundation
import Logging
import PostgresNIO
import TockCluster
import TockCore
import TockPostgres

/// Finds the database: --database-url, DATABASE_URL, PG*, else the embedded cluster (started if needed;
/// created only when `createEmbedded`, i.e. by `tock up`).
public func resolveSettings(_ options: GlobalOptions, logger: Logger, createEmbedded: Bool) throws(TockError) -> ConnectionSettings {
    var environment = ProcessInfo.processInfo.environment
    if let url = options.databaseURL { environment["DATABASE_URL"] = url }
    do {
        if let settings = try ConnectionSettings.fromEnvironment(environment) { return settings }
    } catch {
        throw TockError(error)
    }
    let cluster = EmbeddedCluster(directory: options.homeDirectory, logger: logger)
    guard createEmbedded || FileManager.default.fileExists(atPath: options.homeDirectory + "/postgres/data/PG_VERSION") else {
        throw TockError(.unavailable, "no database: set DATABASE_URL (or PGHOST, PGDATABASE, …), or run `tock up` "
            + "here to create the embedded one under \(options.homeDirectory)")
    }
    return try cluster.start()
}

/// With several servers named (or target_session_attrs=read-write), the settings of the one that accepts writes;
/// `.unavailable` with what each said when none does.
public func findPrimary(_ settings: ConnectionSettings, logger: Logger) async throws(TockError) -> ConnectionSettings {
    let (found, said) = await PrimaryClient.findPrimary(settings, logger: logger)
    guard let found else {
        // A standby, and the others out of reach: a failover may be under way ("yet"). Every server out of reach is
        // an outage, reported as for one server; a refused login is a mistake.
        let passing = said.contains { $0.contains("read-only") } && said.allSatisfy { $0.contains("read-only") || $0.contains("cannot reach") || $0.contains("did not answer") }
        throw TockError(.unavailable, "no server in DATABASE_URL accepts writes\(passing ? " yet" : ""): \(said.joined(separator: "; "))")
    }
    return found
}

/// Runs `body` with a connected `Database`, the pool running beside it: on the server that accepts writes, when
/// the settings name several.
public func withDatabase<T: Sendable>(_ settings: ConnectionSettings, logger: Logger,
                                      _ body: @Sendable (Database, PostgresClient) async throws -> T) async throws -> T {
    let settings = settings.followsPrimary ? try await findPrimary(settings, logger: logger) : settings
    // The pool's own chatter (e.g. a lease asked for a moment before run() starts) is not for one-shot commands.
    var poolLogger = logger
    poolLogger.logLevel = max(logger.logLevel, .error)
    let client = PostgresClient(configuration: settings.clientConfiguration(maximumConnections: 4), backgroundLogger: poolLogger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(Database(client: client, logger: logger, settings: settings), client)
    }
}

/// The common shape of a one-shot command: resolve, connect, run, and turn errors into a message and exit code.
@discardableResult
public func oneShot<T: Sendable>(_ options: GlobalOptions, _ body: @Sendable (Database, PostgresClient) async throws -> T) async throws -> T {
    let logger = options.logger(label: "tock", defaultLevel: .warning)
    do {
        let settings = try resolveSettings(options, logger: logger, createEmbedded: false)
        return try await withDatabase(settings, logger: logger) { database, client in
            try await database.checkConnection()
            var database = database
            database.actor = AuditActor.cli()
            return try await body(database, client)
        }
    } catch let error as TockError {
        throw fail(error)
    } catch let error as InputError {
        throw fail(TockError(error))
    } catch let error as PSQLError {
        throw fail(TockError(from: error))
    }
}
