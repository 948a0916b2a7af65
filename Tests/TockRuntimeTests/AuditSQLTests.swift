import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("audit log in SQL: who is recorded, who may touch it, what the engine leaves out, retention")
struct AuditSQLTests {
    @Test("SQL: a caller that names itself is recorded with its real login; roles cannot touch the log; the engine's own changes are not recorded")
    func auditInSQL() async throws {
        try await TestDatabase.withFresh { owner, settings in
            try await TestRoles.ensure(settings)
            _ = try await owner.createJob(JobDefinition(name: "every", script: "x.sh", schedule: "every 1 minute"))
            let before = try await owner.audit(limit: 1000).count
            // The scheduler advancing next_run_at, and a finish with its automatic retry, are the engine's, not a person's.
            _ = try await owner.tick(lookahead: .seconds(120))
            #expect(try await owner.audit(limit: 1000).count == before)

            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.admin)) { admin in
                try await admin.withConnection { connection in
                    _ = try await connection.query("BEGIN", logger: TestDatabase.logger).collect()
                    _ = try await connection.query("SELECT set_config('tock.actor', 'api:ops', true)", logger: TestDatabase.logger).collect()
                    _ = try await connection.query("SELECT tock.pause_job('every')", logger: TestDatabase.logger).collect()
                    _ = try await connection.query("COMMIT", logger: TestDatabase.logger).collect()
                }
                for refused in ["DELETE FROM tock.audit", "UPDATE tock.audit SET actor = 'someone'",
                                "INSERT INTO tock.audit (actor, via, db_role, action) VALUES ('x', 'sql', 'x', 'x')",
                                "SELECT tock.audit_write('job.pause', NULL, NULL, NULL, NULL, NULL)",
                                "SELECT tock.purge_audit()"] {
                    #expect(await sqlState(admin, refused) == "42501", "\(refused)")
                }
                #expect(await sqlState(admin, "SELECT tock.bulk_runs('cancel', p_filter => '{\"status\": \"pending\"}')") == nil)
                // Shortening the log's retention would let an admin erase what they did: the owner's call alone.
                #expect(await sqlState(admin, "SELECT tock.set_config('audit_retention', '1 day')") == "42501")
            }
            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.viewer)) { viewer in
                #expect(await sqlState(viewer, "SELECT * FROM tock.audit_log") == nil)
                #expect(await sqlState(viewer, "SELECT * FROM tock.audit_page()") == nil)
                #expect(await sqlState(viewer, "SELECT * FROM tock.find_runs('{\"status\": \"failed\"}')") == nil)
                #expect(await sqlState(viewer, "SELECT tock.bulk_runs('cancel', p_ids => ARRAY[1])") == "42501")
            }
            let pause = try #require(try await owner.audit(action: "job.pause").first)
            #expect(pause.actor == "ops" && pause.via == "api" && pause.dbRole == TestRoles.admin)
            let bulk = try #require(try await owner.audit(action: "runs.cancel").first)
            #expect(bulk.via == "sql" && bulk.actor == TestRoles.admin)

            // Retention: entries older than the audit retention go at the next purge, newer ones stay.
            try await TestDatabase.withClient(settings) { client in
                _ = try await client.query("UPDATE tock.audit SET at = now() - interval '400 days' WHERE action = 'job.create'").collect()
                _ = try await client.query("SELECT tock.purge_history()").collect()
            }
            #expect(try await owner.audit(action: "job.create").isEmpty)
            #expect(try await owner.audit(action: "job.pause").count == 1)
            #expect(try await owner.setConfig("audit_retention", "2 years").isEmpty == false)
            await #expect(throws: TockError.self) { _ = try await owner.setConfig("audit_retention", "1h") }
        }
    }
}
