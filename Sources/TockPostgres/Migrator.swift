import Logging
import Synchronization
import PostgresNIO
import TockCore

/// Brings a database to the bundled SQL: pending migrations in order, each in its own transaction with the row
/// that records it, then the functions and views when they changed. One plan serves both ways to apply it:
/// `migrate()` runs it under a session advisory lock (concurrent `tock migrate`s queue up and the later ones find
/// nothing to do), and `script(_:)` prints it for a DBA to review and apply with psql, so a database migrated
/// either way records the same rows. Refuses to run when an applied migration's file was edited since.
///
/// Clients of the release before keep calling their functions while the plan runs, and between a migration's commit
/// and the functions step's those functions may meet tables they do not know. A migration that breaks them has a
/// bridge (`bridges/`, the migration's name), run in the migration's transaction: it makes them fail with an error
/// that says so (0012_history's), so that none fails with a puzzle or, worse, goes on wrong.
public struct Migrator: Sendable {
    public struct Report: Sendable, Equatable {
        public var applied: [String] = []
        /// Migrations found applied without a record (see `Step.Action.record`), recorded without running them.
        public var recorded: [String] = []
        public var functionsApplied = false
        /// Nothing in the schema changed (recording what was already there changes no object).
        public var upToDate: Bool { applied.isEmpty && !functionsApplied }
    }

    /// One thing the plan does, in its own transaction.
    public struct Step: Sendable, Equatable {
        public enum Action: Sendable, Equatable {
            /// Runs a migration file, then its bridge if it has one, and records it.
            case apply
            /// Records a migration that is already applied: psql applied it and it did not record itself (0005-0011
            /// did not), or recorded it without its checksum (0001-0004 do).
            case record
            /// Runs every functions file, refreshes the time zones, and records the functions' checksum.
            case functions
        }

        public var action: Action
        /// The migration (`0005_scale`) or `functions`.
        public var name: String
        /// The SQL files run, in order (none for `.record`).
        public var files: [SQLFiles.File]
        /// The statements after the files that record what was done.
        public var record: [String]

        /// Whether `files[index]` is a bridge: an apply step's files are its migration, then the migration's bridge.
        func isBridge(_ index: Int) -> Bool { action == .apply && index > 0 }
    }

    /// The advisory lock key: 'tock' in ASCII.
    static let lockKey: Int64 = 0x746F_636B
    static let functionsVersion = 0

    /// How to tell that a migration from before the plan recorded every file is applied: the README once told DBAs
    /// to apply each file with psql, and 0005-0011 did not record themselves. Each is an effect of the file that no
    /// other file has; psql applied each file in one transaction, so one effect present means all of it is.
    static let effectsOfUnrecorded: [Int: String] = [
        // 0012 dropped the index 0005 and 0007 are known by, with the table it was on.
        5: "to_regclass('tock.runs_finished_status_idx') IS NOT NULL OR to_regclass('tock.finished_runs') IS NOT NULL",
        6: "NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'tock.runs'::regclass AND conname = 'runs_worker_id_fkey')",
        7: """
            (to_regclass('tock.runs_finished_status_idx') IS NOT NULL OR to_regclass('tock.finished_runs') IS NOT NULL)
            AND to_regclass('tock.jobs_overlap_queue_idx') IS NULL
            """,
        8: "EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'tock.runs'::regclass AND attname = 'timeout_at' AND NOT attisdropped)",
        9: "EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'tock.workers'::regclass AND attname = 'session_locked' AND NOT attisdropped)",
        10: "NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'tock.runs'::regclass AND conname = 'runs_job_id_fkey')",
        11: "EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'tock.workers'::regclass AND attname = 'session_pid' AND NOT attisdropped)",
    ]

    public let client: PostgresClient
    public let files: SQLFiles
    public let logger: Logger

    public init(client: PostgresClient, files: SQLFiles, logger: Logger) {
        self.client = client
        self.files = files
        self.logger = logger
    }

    /// What `migrate()` would do now (`tock doctor`, the health check, `tock migrate --dry-run`).
    public func plan() async throws -> [Step] {
        try await client.withConnection { connection in try await self.plan(connection) }
    }

    /// True when every migration and the current functions are applied and recorded.
    public func isUpToDate() async throws -> Bool {
        try await plan().isEmpty
    }

    @discardableResult
    public func migrate() async throws -> Report {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger).collect()
            do {
                let report = try await self.run(self.plan(connection), on: connection)
                _ = try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger).collect()
                return report
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger).collect()
                throw error
            }
        }
    }

    /// The plan as a psql script: what `migrate()` runs, statement for statement, each step in its own transaction
    /// under the same advisory lock. Apply with `psql -v ON_ERROR_STOP=1 -f FILE`.
    public func script(_ steps: [Step]) -> String {
        var lines = [
            "-- What `tock migrate` would run on this database now. Review it, then apply it with",
            "--   psql -v ON_ERROR_STOP=1 -f THIS_FILE",
            "-- Each step is one transaction; a step that fails leaves nothing behind, and `tock migrate` (or this",
            "-- script made again) carries on from there.",
            "\\set ON_ERROR_STOP on",
        ]
        if steps.isEmpty { lines.append("-- up to date: nothing to apply") }
        for step in steps {
            lines.append("")
            lines.append("-- \(step.action == .record ? "record \(step.name) (already applied)" : step.name)")
            lines.append("BEGIN;")
            lines.append("SELECT pg_advisory_xact_lock(\(Self.lockKey));")
            for (index, file) in step.files.enumerated() {
                if step.action == .functions { lines.append("-- \(file.name).sql") }
                if step.isBridge(index) { lines.append("-- bridges/\(file.name).sql") }
                lines.append(file.text.hasSuffix("\n") ? String(file.text.dropLast()) : file.text)
            }
            lines += step.record.map { $0 + ";" }
            lines.append("COMMIT;")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Planning

    private func plan(_ connection: PostgresConnection) async throws -> [Step] {
        let recorded = try await recordedChecksums(connection)
        let sums = try await checksums(of: files.migrations.map(\.text) + [functionsText], connection)
        var steps: [Step] = []
        for (file, sum) in zip(files.migrations, sums) {
            switch recorded[file.version] {
            case .some(.some(let checksum)):
                // Migrations are forward-only: an applied file must not change.
                guard checksum == sum else {
                    throw TockError(.failed, "migration \(file.name).sql was edited after it was applied "
                        + "(checksum \(checksum.prefix(12)) in tock.migrations, \(sum.prefix(12)) on disk); "
                        + "migrations are forward-only: restore the file and put the change in a new numbered migration")
                }
            case .some(.none):
                steps.append(Step(action: .record, name: file.name, files: [], record: [Self.recordStatement(file, sum)]))
            case .none:
                // Before 0001 there is no schema to look at; after it, a file applied without a record shows.
                let applied = recorded[1] != nil
                    ? try await Self.effectsOfUnrecorded[file.version].asyncMap { effect in
                        try await connection.query(PostgresQuery(unsafeSQL: "SELECT \(effect)"), logger: logger)
                            .decode(Bool.self).all().first ?? false
                    } ?? false
                    : false
                let bridges = files.bridges.filter { $0.name == file.name }
                steps.append(Step(action: applied ? .record : .apply, name: file.name,
                                  files: applied ? [] : [file] + bridges, record: [Self.recordStatement(file, sum)]))
            }
        }
        // After any migration (it may have dropped what a view stood on), and whenever the functions changed.
        let functionsSum = sums.last ?? ""
        let recordedFunctions = recorded[Self.functionsVersion] ?? nil
        if steps.contains(where: { $0.action == .apply }) || recordedFunctions != functionsSum {
            steps.append(Step(action: .functions, name: "functions", files: files.functions, record: [
                // The server's zone list may have grown with an OS update.
                """
                INSERT INTO tock.timezones (name) SELECT name FROM pg_timezone_names
                WHERE name NOT LIKE 'posix/%' AND name <> 'posixrules' ON CONFLICT DO NOTHING
                """,
                """
                INSERT INTO tock.migrations (version, name, checksum) VALUES (0, 'functions', '\(functionsSum)')
                ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()
                """,
            ]))
        }
        return steps
    }

    static func recordStatement(_ file: SQLFiles.File, _ checksum: String) -> String {
        """
        INSERT INTO tock.migrations (version, name, checksum) VALUES (\(file.version), '\(file.name)', '\(checksum)')
        ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum
        """
    }

    /// Every recorded version with its checksum (nil: recorded by a file applied with psql, which knows none).
    private func recordedChecksums(_ connection: PostgresConnection) async throws -> [Int: String?] {
        let exists = try await connection.query("SELECT to_regclass('tock.migrations') IS NOT NULL", logger: logger)
            .decode(Bool.self).all().first ?? false
        guard exists else { return [:] }
        var recorded: [Int: String?] = [:]
        for try await (version, checksum) in try await connection.query(
            "SELECT version, checksum FROM tock.migrations", logger: logger).decode((Int, String?).self) {
            recorded[version] = checksum
        }
        return recorded
    }

    private var functionsText: String { files.functionsText }

    /// The SHA-256 of each text, as PostgreSQL computes it, asked once per process and text: GET /api/v1/health
    /// plans on every call, and sending the whole bundle of functions each time to hash it is waste.
    private func checksums(of texts: [String], _ connection: PostgresConnection) async throws -> [String] {
        let known = Self.checksumCache.withLock { cache in texts.map { cache[$0] } }
        if known.allSatisfy({ $0 != nil }) { return known.map { $0! } }
        let sums = try await connection.query("""
            SELECT encode(sha256(convert_to(t, 'UTF8')), 'hex') FROM unnest(\(texts)::text[]) WITH ORDINALITY AS u(t, i)
            ORDER BY i
            """, logger: logger).decode(String.self).all()
        guard sums.count == texts.count else { throw TockError(.failed, "PostgreSQL returned \(sums.count) checksums for \(texts.count) files") }
        Self.checksumCache.withLock { cache in for (text, sum) in zip(texts, sums) { cache[text] = sum } }
        Self.checksumAsks.withLock { asks in for text in texts { asks[text, default: 0] += 1 } }
        return sums
    }

    private static let checksumCache = Mutex<[String: String]>([:])
    /// How many times this process has asked PostgreSQL for each text's checksum. Per text, so that the test of the
    /// cache is not disturbed by other tests migrating with other files at the same time.
    private static let checksumAsks = Mutex<[String: Int]>([:])

    /// How many times this process has asked PostgreSQL to hash the functions of `files`.
    public static func functionChecksumAsks(_ files: SQLFiles) -> Int {
        checksumAsks.withLock { $0[files.functionsText] ?? 0 }
    }

    // MARK: Running

    private func run(_ steps: [Step], on connection: PostgresConnection) async throws -> Report {
        var report = Report()
        guard !steps.isEmpty else { return report }
        _ = try await connection.query("""
            CREATE OR REPLACE FUNCTION pg_temp.tock_exec(script text) RETURNS void LANGUAGE plpgsql
            AS $$ BEGIN EXECUTE script; END $$
            """, logger: logger).collect()
        for step in steps {
            logger.info("migrating", metadata: ["step": "\(step.name)", "action": "\(step.action)"])
            _ = try await connection.query("BEGIN", logger: logger).collect()
            var current = step.files.first.map { "\($0.name).sql" } ?? "the record of \(step.name)"
            do {
                for (index, file) in step.files.enumerated() {
                    current = step.action == .functions ? "functions file \(file.name).sql"
                        : step.isBridge(index) ? "bridge bridges/\(file.name).sql" : "migration \(file.name).sql"
                    _ = try await connection.query("SELECT pg_temp.tock_exec(\(file.text))", logger: logger).collect()
                }
                current = "the record of \(step.name)"
                for statement in step.record {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).collect()
                }
                _ = try await connection.query("COMMIT", logger: logger).collect()
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger).collect()
                throw Self.failure(of: current, error)
            }
            switch step.action {
            case .apply: report.applied.append(step.name)
            case .record: report.recorded.append(step.name)
            case .functions: report.functionsApplied = true
            }
        }
        return report
    }

    /// One line: what failed and what PostgreSQL said, never a Swift error value.
    static func failure(of what: String, _ error: any Error) -> TockError {
        if let psql = error as? PSQLError, let server = psql.serverInfo {
            let message = (server[.message] ?? "an error").replacingOccurrences(of: "\n", with: " ")
            return TockError(.failed, "\(what) failed: \(message) (SQLSTATE \(server[.sqlState] ?? "?"))")
        }
        let mapped = TockError(from: error)
        return TockError(mapped.kind, "\(what) failed: \(mapped.message)")
    }
}

extension Optional {
    fileprivate func asyncMap<U>(_ transform: (Wrapped) async throws -> U) async rethrows -> U? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
