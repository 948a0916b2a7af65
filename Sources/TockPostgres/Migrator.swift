import Logging
import Synchronization
import PostgresNIO
import TockCore

/// Applies sql/migrations in order, each in its own transaction, then (re)applies sql/functions when they
/// changed. Runs under a session advisory lock, so concurrent `tock migrate`s queue up and the later ones find
/// nothing to do. Refuses to run when an applied migration's file was edited since.
public struct Migrator: Sendable {
    public struct Report: Sendable, Equatable {
        public var applied: [String] = []
        public var functionsApplied = false
        public var upToDate: Bool { applied.isEmpty && !functionsApplied }
    }

    /// The advisory lock key: 'tock' in ASCII.
    static let lockKey: Int64 = 0x746F_636B
    static let functionsVersion = 0

    public let client: PostgresClient
    public let files: SQLFiles
    public let logger: Logger

    public init(client: PostgresClient, files: SQLFiles, logger: Logger) {
        self.client = client
        self.files = files
        self.logger = logger
    }

    /// What `migrate()` would do, as SQL for review (`tock migrate --dry-run`).
    public func plan() async throws -> [SQLFiles.File] {
        try await client.withConnection { connection in
            let state = try await self.appliedState(connection)
            var plan = self.pendingMigrations(state)
            if try await self.functionsChecksum(connection) != state.checksums[Self.functionsVersion] ?? nil {
                plan += files.functions
            }
            return plan
        }
    }

    @discardableResult
    public func migrate() async throws -> Report {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger).collect()
            do {
                let report = try await self.migrateLocked(connection)
                _ = try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger).collect()
                return report
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger).collect()
                throw error
            }
        }
    }

    struct AppliedState {
        var checksums: [Int: String?] = [:]
    }

    private func appliedState(_ connection: PostgresConnection) async throws -> AppliedState {
        var state = AppliedState()
        let exists = try await connection.query("SELECT to_regclass('tock.migrations') IS NOT NULL", logger: logger)
            .decode(Bool.self).all().first ?? false
        guard exists else { return state }
        for try await (version, checksum) in try await connection.query(
            "SELECT version, checksum FROM tock.migrations", logger: logger).decode((Int, String?).self) {
            state.checksums[version] = checksum
        }
        return state
    }

    private func pendingMigrations(_ state: AppliedState) -> [SQLFiles.File] {
        files.migrations.filter { state.checksums[$0.version] == nil }
    }

    private func checksum(_ text: String, _ connection: PostgresConnection) async throws -> String {
        try await connection.query("SELECT encode(sha256(convert_to(\(text), 'UTF8')), 'hex')", logger: logger)
            .decode(String.self).all().first ?? ""
    }

    /// The functions' checksum, asked of PostgreSQL once per process and text: GET /api/v1/health compares it with
    /// the applied one on every call, and sending the whole bundle (about 110 KB) each time to hash it is waste.
    private func functionsChecksum(_ connection: PostgresConnection) async throws -> String {
        let text = files.functions.map { "-- \($0.name)\n\($0.text)" }.joined(separator: "\n")
        if let known = Self.functionsChecksums.withLock({ $0[text] }) { return known }
        let sum = try await checksum(text, connection)
        Self.functionsChecksums.withLock { $0[text] = sum }
        Self.functionsChecksumsComputed.add(1, ordering: .relaxed)
        return sum
    }

    private static let functionsChecksums = Mutex<[String: String]>([:])
    /// How many times this process has asked PostgreSQL for the functions' checksum (the test of the cache reads it).
    public static let functionsChecksumsComputed = Atomic<Int>(0)

    private func migrateLocked(_ connection: PostgresConnection) async throws -> Report {
        var report = Report()
        let state = try await appliedState(connection)
        // An applied file must not change: migrations are forward-only.
        for file in files.migrations {
            guard let recorded = state.checksums[file.version] else { continue }
            let actual = try await checksum(file.text, connection)
            if let recorded {
                guard recorded == actual else {
                    throw TockError(.failed, "migration \(file.name).sql was edited after it was applied "
                        + "(checksum \(recorded.prefix(12)) in tock.migrations, \(actual.prefix(12)) on disk); "
                        + "migrations are forward-only: restore the file and put the change in a new numbered migration")
                }
            } else {
                // Applied by a DBA with psql: adopt it.
                _ = try await connection.query(
                    "UPDATE tock.migrations SET checksum = \(actual) WHERE version = \(file.version)", logger: logger).collect()
            }
        }
        _ = try await connection.query("""
            CREATE OR REPLACE FUNCTION pg_temp.tock_exec(script text) RETURNS void LANGUAGE plpgsql
            AS $$ BEGIN EXECUTE script; END $$
            """, logger: logger).collect()
        for file in pendingMigrations(state) {
            let sum = try await checksum(file.text, connection)
            logger.info("applying migration", metadata: ["migration": "\(file.name)"])
            try await connection.withTransaction(logger: logger) { transaction in
                _ = try await transaction.query("SELECT pg_temp.tock_exec(\(file.text))", logger: logger).collect()
                _ = try await transaction.query("""
                    INSERT INTO tock.migrations (version, name, checksum) VALUES (\(file.version), \(file.name), \(sum))
                    ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum
                    """, logger: logger).collect()
            }
            report.applied.append(file.name)
        }
        let functionsSum = try await functionsChecksum(connection)
        let recordedFunctions = try await appliedState(connection).checksums[Self.functionsVersion] ?? nil
        if functionsSum != recordedFunctions {
            logger.info("applying functions and views", metadata: ["files": "\(files.functions.count)"])
            try await connection.withTransaction(logger: logger) { transaction in
                for file in files.functions {
                    _ = try await transaction.query("SELECT pg_temp.tock_exec(\(file.text))", logger: logger).collect()
                }
                // The server's zone list may have grown with an OS update.
                _ = try await transaction.query("""
                    INSERT INTO tock.timezones (name) SELECT name FROM pg_timezone_names
                    WHERE name NOT LIKE 'posix/%' AND name <> 'posixrules' ON CONFLICT DO NOTHING
                    """, logger: logger).collect()
                _ = try await transaction.query("""
                    INSERT INTO tock.migrations (version, name, checksum) VALUES (0, 'functions', \(functionsSum))
                    ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()
                    """, logger: logger).collect()
            }
            report.functionsApplied = true
        }
        return report
    }

    /// True when every migration and the current functions are applied (for `tock status` and health checks).
    public func isUpToDate() async throws -> Bool {
        try await plan().isEmpty
    }
}
