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
