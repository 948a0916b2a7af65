import Foundation
import Logging
import PostgresNIO
import Synchronization
import TockCluster
import TockCore
import TockPostgres

/// Real PostgreSQL for tests: the server from `TOCK_TEST_DATABASE_URL` (ops/test starts one), else
/// DATABASE_URL/PG*, else an embedded cluster under `<package>/.tock-test`. Each test gets a fresh database
/// cloned from a template migrated once per test process.
public enum TestDatabase {
    public static let logger: Logger = {
        var logger = Logger(label: "tock-test")
        logger.logLevel = ProcessInfo.processInfo.environment["TOCK_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .error
        return logger
    }()

    /// The package's root directory (for the embedded fallback and to find the built `tock`).
    /// The password of the login roles tests create (the embedded cluster asks every connection for one).
    public static let rolePassword = "tock-test-role-password"

    public static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The embedded cluster the tests run on, when they do (ops/test sets TOCK_TEST_HOME): the fault tests
    /// restart it. Nil when the tests use a server of someone else's.
    public static var cluster: EmbeddedCluster? {
        let environment = ProcessInfo.processInfo.environment
        if let home = environment["TOCK_TEST_HOME"], !home.isEmpty { return EmbeddedCluster(directory: home, logger: logger) }
        if environment["TOCK_TEST_DATABASE_URL"] == nil, environment["DATABASE_URL"] == nil, environment["PGHOST"] == nil {
            return EmbeddedCluster(directory: packageRoot + "/.tock-test", logger: logger)
        }
        return nil
    }

    public static func serverSettings() throws -> ConnectionSettings {
        var environment = ProcessInfo.processInfo.environment
        if let url = environment["TOCK_TEST_DATABASE_URL"], !url.isEmpty { environment = ["DATABASE_URL": url] }
        if let settings = try ConnectionSettings.fromEnvironment(environment) { return settings }
        return try EmbeddedCluster(directory: packageRoot + "/.tock-test", logger: logger).start()
    }

    private static let template = Mutex<Task<(ConnectionSettings, String), any Error>?>(nil)
    private static let counter = Atomic<Int>(0)

    /// Creates the migrated template once; returns the server and the template's name.
    static func prepareTemplate() async throws -> (ConnectionSettings, String) {
        let task = template.withLock { task in
            if let task { return task }
            let created = Task { () throws -> (ConnectionSettings, String) in
                let server = try serverSettings()
                let name = "tock_tpl_\(getpid())"
                try await withClient(server.with(database: "postgres")) { admin in
                    // Databases of earlier test processes: gone with them.
                    let stale = try await admin.fetch("""
                        SELECT datname FROM pg_database
                        WHERE (datname LIKE 'tock_tpl_%' OR datname LIKE 'tock_test_%')
                          AND datname NOT LIKE \("%\\_\(getpid())\\_%") AND datname <> \(name)
                        """, logger: logger).map { try $0.decode(String.self) }
                    for database in stale {
                        _ = try await admin.fetch("DROP DATABASE IF EXISTS \(unescaped: database) WITH (FORCE)", logger: logger)
                    }
                    _ = try await admin.fetch("DROP DATABASE IF EXISTS \(unescaped: name) WITH (FORCE)", logger: logger)
                    _ = try await admin.fetch("CREATE DATABASE \(unescaped: name)", logger: logger)
                }
                _ = try await withClient(server.with(database: name)) { client in
                    try await Migrator(client: client, files: try SQLFiles.bundled(), logger: logger).migrate()
                }
                return (server, name)
            }
            task = created
            return created
        }
        return try await task.value
    }

    private static let creator = Mutex<PostgresClient?>(nil)

    /// The one pool that creates this process's databases. The suite's tests start together: with a pool each, their
    /// CREATE DATABASEs held 84 connections at once, waiting in turn (they serialize on the template anyway), and
    /// with the tests' own connections the server ran out of its 200.
    static func creatorClient(_ server: ConnectionSettings) -> PostgresClient {
        creator.withLock { creator in
            if let creator { return creator }
            let client = PostgresClient(configuration: server.with(database: "postgres").clientConfiguration(maximumConnections: 2),
                                        backgroundLogger: logger)
            Task.detached { await client.run() }  // for the life of the test process
            creator = client
            return client
        }
    }

    /// A fresh, migrated, empty database of its own.
    public static func create() async throws -> ConnectionSettings {
        let (server, template) = try await prepareTemplate()
        let name = "tock_test_\(getpid())_\(counter.add(1, ordering: .relaxed).newValue)"
        _ = try await creatorClient(server).fetch("CREATE DATABASE \(unescaped: name) TEMPLATE \(unescaped: template)", logger: logger)
        return server.with(database: name)
    }

    /// An empty database with no Tock schema at all (for migration tests).
    public static func createEmpty() async throws -> ConnectionSettings {
        let server = try serverSettings()
        let name = "tock_test_\(getpid())_\(counter.add(1, ordering: .relaxed).newValue)"
        _ = try await creatorClient(server).fetch("CREATE DATABASE \(unescaped: name)", logger: logger)
        return server.with(database: name)
    }

    /// Runs `body` with a fresh database and a running pool on it.
    public static func withFresh<T: Sendable>(
        maximumConnections: Int = 10,
        _ body: @Sendable (Database, ConnectionSettings) async throws -> T) async throws -> T {
        let settings = try await create()
        return try await withClient(settings, maximumConnections: maximumConnections) { client in
            try await body(Database(client: client, logger: logger, settings: settings), settings)
        }
    }

    /// Runs `body` with a running `PostgresClient`.
    public static func withClient<T: Sendable>(_ settings: ConnectionSettings, maximumConnections: Int = 10,
                                               _ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: settings.clientConfiguration(maximumConnections: maximumConnections),
                                    backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes: tests wait on state, never sleep a fixed time.
/// Timeouts are generous (30 s by default, 60 s where other processes must start first): a wait costs nothing once
/// its condition holds, and a loaded machine can take far longer than the happy path.
public func eventually(timeout: Duration = .seconds(30), interval: Duration = .milliseconds(20),
                       _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: interval)
    }
    return try await condition()
}

/// The numbers a script wrote to `path` with `echo … > path`, once the line is whole: a shell creates the file before
/// it writes, so a test that waited only for the file read an empty or partial number. Empty until then.
public func pidsWritten(to path: String) -> [Int32] {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    guard text.hasSuffix("\n") else { return [] }
    return text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int32($0) }
}

/// A scratch directory for scripts, removed by the caller.
public func makeScriptsDirectory(_ scripts: [String: String]) throws -> String {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("tock-scripts-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (name, body) in scripts {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try body.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }
    return directory
}
