import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("migrations")
struct MigratorTests {
    @Test("two concurrent migrations on an empty database both succeed; the next one is a no-op")
    func concurrentThenNoop() async throws {
        let settings = try await TestDatabase.createEmpty()
        try await TestDatabase.withClient(settings) { client in
            let migrator = Migrator(client: client, files: try SQLFiles.bundled(), logger: TestDatabase.logger)
            async let first = migrator.migrate()
            async let second = migrator.migrate()
            let reports = try await [first, second]
            #expect(reports.filter { !$0.applied.isEmpty }.count == 1)
            #expect(try await migrator.migrate().upToDate)
            #expect(try await migrator.isUpToDate())
            let versions = try await client.query("SELECT version FROM tock.migrations ORDER BY version").decode(Int.self).all()
            #expect(versions == [0] + (try SQLFiles.bundled().migrations.map(\.version)))
        }
    }

    @Test("a database owner without superuser or CREATEROLE migrates; the roles' grants still apply")
    func migrateWithoutSuperuser() async throws {
        let server = try TestDatabase.serverSettings()
        let name = "tock_test_\(getpid())_owner"
        try await TestDatabase.withClient(server.with(database: "postgres")) { admin in
            for role in ["tock_viewer", "tock_worker", "tock_admin"] {
                _ = try await admin.query(PostgresQuery(unsafeSQL: """
                    DO $$ BEGIN CREATE ROLE \(role) NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$
                    """)).collect()
            }
            _ = try await admin.query(PostgresQuery(unsafeSQL: """
                DO $$ BEGIN CREATE ROLE tock_t_owner LOGIN NOSUPERUSER NOCREATEROLE;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$
                """)).collect()
            _ = try await admin.query(PostgresQuery(unsafeSQL: "ALTER ROLE tock_t_owner PASSWORD '\(TestDatabase.rolePassword)'")).collect()
            _ = try await admin.query("DROP DATABASE IF EXISTS \(unescaped: name) WITH (FORCE)").collect()
            _ = try await admin.query("CREATE DATABASE \(unescaped: name) OWNER tock_t_owner").collect()
        }
        var owner = server.with(database: name)
        owner.username = "tock_t_owner"
        owner.password = TestDatabase.rolePassword
        try await TestDatabase.withClient(owner) { client in
            let migrator = Migrator(client: client, files: try SQLFiles.bundled(), logger: TestDatabase.logger)
            let report = try await migrator.migrate()
            #expect(report.functionsApplied)
            let granted = try await client.query("""
                SELECT has_function_privilege('tock_worker', 'tock.claim_runs(bigint, int, timestamptz, text)', 'EXECUTE'),
                       has_function_privilege('tock_viewer', 'tock.claim_runs(bigint, int, timestamptz, text)', 'EXECUTE'),
                       has_table_privilege('tock_viewer', 'tock.job_overview', 'SELECT'),
                       has_table_privilege('tock_admin', 'tock.jobs', 'UPDATE')
                """).decode((Bool, Bool, Bool, Bool).self).all().first
            #expect(granted?.0 == true && granted?.1 == false && granted?.2 == true && granted?.3 == false)
            #expect(try await client.query("SELECT tock.apply_privileges()").decode([String].self).all() == [[]])
        }
    }

    @Test("the health check's 'migrations current' asks PostgreSQL to hash the bundled functions once per process")
    func functionsHashedOnce() async throws {
        try await TestDatabase.withFresh { database, _ in
            #expect(try await database.migrationsCurrent())
            let bundle = try SQLFiles.bundled()
            let asked = Migrator.functionChecksumAsks(bundle)
            #expect(asked >= 1)
            for _ in 0..<5 { #expect(try await database.migrationsCurrent()) }
            #expect(Migrator.functionChecksumAsks(bundle) == asked)
            // Still a real comparison: functions changed behind its back are seen.
            _ = try await database.client.query("UPDATE tock.migrations SET checksum = 'deadbeef' WHERE version = 0").collect()
            #expect(try await database.migrationsCurrent() == false)
        }
    }

    @Test("an applied migration whose file changed is refused, naming the file")
    func editedMigration() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.client.query("UPDATE tock.migrations SET checksum = 'deadbeef' WHERE version = 1").collect()
            let migrator = Migrator(client: database.client, files: try SQLFiles.bundled(), logger: TestDatabase.logger)
            do {
                try await migrator.migrate()
                Issue.record("an edited migration was accepted")
            } catch let error as TockError {
                #expect(error.message.contains("migration 0001_init.sql was edited after it was applied"))
            }
        }
    }

    @Test("a migration applied by psql (no checksum) is adopted, not re-run")
    func adoptsPsqlMigration() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.client.query("UPDATE tock.migrations SET checksum = NULL WHERE version = 1").collect()
            let migrator = Migrator(client: database.client, files: try SQLFiles.bundled(), logger: TestDatabase.logger)
            #expect(try await migrator.migrate().applied.isEmpty)
            let checksum = try await database.client.query("SELECT checksum FROM tock.migrations WHERE version = 1")
                .decode(String?.self).all().first ?? nil
            #expect(checksum?.count == 64)
        }
    }
}
