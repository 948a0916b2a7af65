import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// psql against `settings`, as a DBA runs it: `-X -v ON_ERROR_STOP=1`, one transaction per file when `single`.
func psql(_ settings: ConnectionSettings, file: String, single: Bool = false) async throws -> ProgramResult {
    try await runProgramOffPool("/usr/bin/psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1"] + (single ? ["-1"] : []) + ["-f", file, settings.url()],
                   environment: ["PATH": "/usr/bin:/bin"], directory: "/")
}

/// Everything in schema tock that a migration can change, as one text: tables and columns, indexes, constraints,
/// views, functions and triggers with their privileges. Two databases with equal fingerprints have the same schema.
func schemaFingerprint(_ settings: ConnectionSettings) async throws -> String {
    try await TestDatabase.withClient(settings, maximumConnections: 1) { client in
        try await client.query("""
            SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
                SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE c.relnamespace = to_regnamespace('tock') AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'p')
                UNION ALL SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '')
                       || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
                FROM pg_class c WHERE c.relnamespace = to_regnamespace('tock')
                UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'tock'
                UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
                FROM pg_constraint WHERE connamespace = to_regnamespace('tock')
                UNION ALL SELECT 'view ' || viewname || ' ' || md5(definition) FROM pg_views WHERE schemaname = 'tock'
                UNION ALL SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
                       || ' ' || coalesce(p.proacl::text, '')
                FROM pg_proc p WHERE p.pronamespace = to_regnamespace('tock') AND p.prokind IN ('f', 'p')
                UNION ALL SELECT 'trigger ' || t.tgname || ' ' || pg_get_triggerdef(t.oid)
                FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                WHERE c.relnamespace = to_regnamespace('tock') AND NOT t.tgisinternal
            ) s(x)
            """).decode(String?.self).all().first.flatMap { $0 } ?? ""
    }
}

/// The recorded migrations: version and checksum.
func recordedMigrations(_ settings: ConnectionSettings) async throws -> [String] {
    try await TestDatabase.withClient(settings, maximumConnections: 1) { client in
        try await client.query("SELECT version || ' ' || coalesce(checksum, '-') FROM tock.migrations ORDER BY version")
            .decode(String.self).all()
    }
}

extension SQLFiles {
    /// The migrations up to `version`, with their bridges unless told not to, and no functions: the database as a
    /// migration leaves it until the functions step after it (or as `tock migrate` of an older release left it).
    func through(_ version: Int, bridges: Bool = true) -> SQLFiles {
        var older = self
        older.migrations = migrations.filter { $0.version <= version }
        if !bridges { older.bridges = [] }
        older.functions = []
        return older
    }
}

@Suite("tock migrate: the DBA's psql path and every older database")
struct MigrateCLITests {
    let sql = TestDatabase.packageRoot + "/sql"

    @Test("the DBA path as docs/operations.md says: dry-run's script applied with psql, then tock migrate changes nothing")
    func dryRunScriptThenMigrate() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.createEmpty()
        let dryRun = try await tock(["migrate", "--dry-run"], settings: settings, directory: directory)
        #expect(dryRun.status == 0, "\(dryRun.stderr)")
        #expect(dryRun.stdout.contains("-- 0001_init\nBEGIN;"))
        // Review changes nothing.
        #expect(try await schemaFingerprint(settings) == "")
        let script = directory + "/tock-migrate.sql"
        try dryRun.stdout.write(toFile: script, atomically: true, encoding: .utf8)
        let applied = try await psql(settings, file: script)
        #expect(applied.status == 0, "\(applied.stderr)")

        let reference = try await TestDatabase.create()
        let expected = try await schemaFingerprint(reference)
        #expect(try await schemaFingerprint(settings) == expected)
        #expect(try await recordedMigrations(settings) == recordedMigrations(reference))

        let migrate = try await tock(["migrate"], settings: settings, directory: directory)
        #expect(migrate.status == 0, "\(migrate.stderr)")
        #expect(migrate.stdout == "up to date\n", "\(migrate.stdout)\(migrate.stderr)")
        #expect(try await schemaFingerprint(settings) == expected)
        let again = try await tock(["migrate", "--dry-run"], settings: settings, directory: directory)
        #expect(again.stdout.contains("-- up to date: nothing to apply"), "\(again.stdout)")
    }

    @Test("a database the old README's psql loop left at each version: tock migrate records it and brings it current")
    func oldPsqlLoopAtEveryVersion() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = try SQLFiles.bundled()
        let expected = try await schemaFingerprint(try await TestDatabase.create())
        // The loop was in the README up to 0011; the files after it were never applied that way.
        let legacy = files.migrations.filter { $0.version <= 11 }
        for (index, migration) in legacy.enumerated() {
            let settings = try await TestDatabase.createEmpty()
            // Exactly the loop the README gave: each file in one transaction, migrations first. The functions files
            // of those versions are gone (tock migrate replaces them), and today's need today's tables.
            for file in legacy.prefix(index + 1).map({ "\(sql)/migrations/\($0.name).sql" }) {
                let result = try await psql(settings, file: file, single: true)
                try #require(result.status == 0, "\(file): \(result.stderr)")
            }
            let migrate = try await tock(["migrate"], settings: settings, directory: directory)
            #expect(migrate.status == 0, "at \(migration.name): \(migrate.stderr)")
            #expect(!migrate.stderr.contains("error"), "at \(migration.name): \(migrate.stderr)")
            #expect(try await schemaFingerprint(settings) == expected, "at \(migration.name)")
            // What psql applied is recorded, not run again; what came after is applied.
            for file in files.migrations where file.version > 4 {
                let applied = file.version > migration.version
                #expect(migrate.stdout.contains("\(applied ? "applied" : "recorded") \(file.name)"),
                        "at \(migration.name): \(migrate.stdout)")
                #expect(!migrate.stdout.contains("\(applied ? "recorded" : "applied") \(file.name)"),
                        "at \(migration.name): \(migrate.stdout)")
            }
            #expect(try await tock(["migrate"], settings: settings, directory: directory).stdout == "up to date\n")
        }
    }

    @Test("a database tock migrate left at each older version is brought current")
    func tockMigrateAtEveryVersion() async throws {
        let files = try SQLFiles.bundled()
        let expected = try await schemaFingerprint(try await TestDatabase.create())
        for count in 1..<files.migrations.count {
            let settings = try await TestDatabase.createEmpty()
            let older = files.through(files.migrations[count - 1].version)
            try await TestDatabase.withClient(settings) { client in
                let report = try await Migrator(client: client, files: older, logger: TestDatabase.logger).migrate()
                #expect(report.applied.count == count)
                let current = try await Migrator(client: client, files: files, logger: TestDatabase.logger).migrate()
                #expect(current.applied == files.migrations.dropFirst(count).map(\.name))
                #expect(current.recorded.isEmpty)
                #expect(current.functionsApplied)
            }
            #expect(try await schemaFingerprint(settings) == expected, "from \(files.migrations[count - 1].name)")
        }
    }

    @Test("a database at 0011 with history: 0012 moves every run and its output; runs in flight go on where they were")
    func historyMovesAtMigration() async throws {
        let files = try SQLFiles.bundled()
        let settings = try await TestDatabase.createEmpty()
        let before = files.through(11)
        try await TestDatabase.withClient(settings) { client in
            _ = try await Migrator(client: client, files: before, logger: TestDatabase.logger).migrate()
            // The 0011 layout, written directly (its functions are not applied): 1,000 runs that ended over ten
            // days, one in five with output; three pending; two running on a live worker.
            _ = try await client.query("""
                INSERT INTO tock.jobs (name, script, spec)
                VALUES ('report', 'report.sh', ROW('manual', NULL, NULL, NULL, NULL, NULL, NULL, false, false, false))
                """).collect()
            _ = try await client.query("INSERT INTO tock.workers (name, host, pid, concurrency) VALUES ('h:1', 'h', 1, 4)").collect()
            _ = try await client.query("""
                INSERT INTO tock.runs (job_id, trigger, status, enqueued_at, run_after, started_at, finished_at, worker_id,
                                       exit_code, error)
                SELECT 1, 'sql', (ARRAY['succeeded', 'failed', 'timed_out', 'cancelled', 'dead'])[1 + i % 5],
                       now() - i * interval '14 minutes', now() - i * interval '14 minutes',
                       now() - i * interval '14 minutes', now() - i * interval '14 minutes' + interval '3 seconds', 1,
                       i % 5, CASE WHEN i % 5 <> 0 THEN 'error ' || i END
                FROM generate_series(1000, 1, -1) i
                """).collect()
            _ = try await client.query("""
                INSERT INTO tock.run_output (run_id, output, bytes_total, truncated)
                SELECT id, 'output of ' || id, 10 + id, id % 2 = 0 FROM tock.runs WHERE id % 5 = 0
                """).collect()
            _ = try await client.query("""
                INSERT INTO tock.runs (job_id, trigger, status, started_at, worker_id, timeout_at)
                SELECT 1, 'sql', s, CASE WHEN s = 'running' THEN now() END, CASE WHEN s = 'running' THEN 1 END,
                       CASE WHEN s = 'running' THEN now() + interval '1 hour' END
                FROM unnest(ARRAY['pending', 'pending', 'pending', 'running', 'running']) s
                """).collect()
            let snapshot = """
                SELECT string_agg(concat_ws(' ', r.id, r.status, r.finished_at, r.exit_code, r.error, r.worker_id,
                                            o.output, o.bytes_total, o.truncated), E'\n' ORDER BY r.id)
                """
            let old = try await client.query(PostgresQuery(unsafeSQL: snapshot + """
                FROM tock.runs r LEFT JOIN tock.run_output o ON o.run_id = r.id
                """)).decode(String.self).all().first
            let maxId = try await client.query("SELECT max(id) FROM tock.runs").decode(Int64.self).all().first ?? 0

            let current = try await Migrator(client: client, files: files, logger: TestDatabase.logger).migrate()
            #expect(current.applied == files.migrations.filter { $0.version >= 12 }.map(\.name))
            let moved = try await client.query(PostgresQuery(unsafeSQL: snapshot + """
                FROM tock.run_history r LEFT JOIN tock.run_logs o ON o.run_id = r.id
                """)).decode(String.self).all().first
            #expect(moved == old)
            #expect(try await client.query("SELECT count(*)::int FROM tock.runs").decode(Int.self).all() == [5])
            #expect(try await client.query("SELECT count(*)::int FROM tock.finished_runs").decode(Int.self).all() == [1000])
            // 0027 counted the history it found, minute by minute and status by status.
            let countsAgree = """
                SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT concat_ws(' ', minute, status, sum(runs)) x FROM tock.run_counts
                                                            GROUP BY minute, status) c)
                     = (SELECT array_agg(x ORDER BY x) FROM (SELECT concat_ws(' ', tock.minute_of(finished_at), status, count(*)) x
                                                            FROM tock.finished_runs GROUP BY tock.minute_of(finished_at), status) s)
                """
            #expect(try await client.query(PostgresQuery(unsafeSQL: countsAgree)).decode(Bool.self).all() == [true])
            #expect(try await client.query("SELECT array_agg(run_id ORDER BY run_id) FROM tock.run_leases WHERE worker_id = 1")
                .decode([Int64].self).all() == [[maxId - 1, maxId]])
            // The runs in flight go on: a new run's id follows the old ones, a pending run is claimed, a running one
            // ends into the history.
            let next = try await client.query("SELECT tock.run_now('report')").decode(Int64.self).all().first ?? 0
            #expect(next > maxId)
            #expect(try await client.query("SELECT run_id FROM tock.claim_runs(1, 1)").decode(Int64.self).all() == [maxId - 4])
            #expect(try await client.query("SELECT tock.finish_run(\(maxId), 1, 'succeeded', 0)").decode(Bool.self).all() == [true])
            #expect(try await client.query("SELECT status FROM tock.run_history WHERE id = \(maxId)").decode(String.self).all()
                == ["succeeded"])
            #expect(try await client.query(PostgresQuery(unsafeSQL: countsAgree)).decode(Bool.self).all() == [true])
        }
    }

    /// A database at 0011 (no functions of its own) with the release before 0012's claim, finish and stop as far as
    /// they touch the tables, with their signatures; a job, a live worker and two pending runs.
    private func databaseBefore0012(_ client: PostgresClient, _ files: SQLFiles) async throws {
        _ = try await Migrator(client: client, files: files.through(11), logger: TestDatabase.logger).migrate()
        _ = try await client.query("""
            CREATE FUNCTION tock.claim_runs(p_worker bigint, p_max int, p_now timestamptz DEFAULT now(),
                                            p_lease_token text DEFAULT NULL)
            RETURNS TABLE (run_id bigint, job_id bigint, job_name text, script text, args text[],
                           timeout_seconds float8, attempt int, trigger text, scheduled_for timestamptz)
            LANGUAGE plpgsql AS $$
            BEGIN
                RETURN QUERY UPDATE tock.runs r SET status = 'running', started_at = p_now, worker_id = p_worker
                WHERE r.id IN (SELECT p.id FROM tock.runs p WHERE p.status = 'pending' ORDER BY p.id LIMIT p_max)
                RETURNING r.id, r.job_id, 'report', 'report.sh', '{}'::text[], 60::float8, r.attempt, r.trigger,
                          r.scheduled_for;
            END $$
            """).collect()
        _ = try await client.query("""
            CREATE FUNCTION tock.finish_run(
                p_run bigint, p_worker bigint, p_status text, p_exit_code int DEFAULT NULL, p_error text DEFAULT NULL,
                p_output text DEFAULT '', p_bytes_total bigint DEFAULT 0, p_truncated boolean DEFAULT false,
                p_now timestamptz DEFAULT now(), p_lease_token text DEFAULT NULL)
            RETURNS boolean LANGUAGE sql AS $$
                UPDATE tock.runs SET status = p_status, exit_code = p_exit_code, finished_at = now()
                WHERE id = p_run AND worker_id = p_worker RETURNING true
            $$
            """).collect()
        _ = try await client.query("""
            CREATE FUNCTION tock.set_worker_state(p_worker bigint, p_state text, p_now timestamptz DEFAULT now(),
                                                  p_lease_token text DEFAULT NULL)
            RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE tock.workers SET state = p_state WHERE id = p_worker;
                RETURN FOUND;
            END $$
            """).collect()
        _ = try await client.query("""
            INSERT INTO tock.jobs (name, script, spec)
            VALUES ('report', 'report.sh', ROW('manual', NULL, NULL, NULL, NULL, NULL, NULL, false, false, false))
            """).collect()
        _ = try await client.query("INSERT INTO tock.workers (name, host, pid, concurrency) VALUES ('h:1', 'h', 1, 4)").collect()
        _ = try await client.query("INSERT INTO tock.runs (job_id, trigger) VALUES (1, 'sql'), (1, 'sql')").collect()
    }

    private static let leaseless: PostgresQuery = """
        SELECT count(*)::int FROM tock.runs r
        WHERE r.status = 'running' AND NOT EXISTS (SELECT FROM tock.run_leases l WHERE l.run_id = r.id)
        """

    private static func upgrading(_ what: String) -> String {
        "\(what) is being upgraded: tock migrate has moved the runs to the tables of migration 0012_history and "
            + "applies the functions that use them last"
    }

    @Test("between 0012's commit and the functions', the release before's claim and finish fail with an error that says why")
    func oldClientsMeetTheBridge() async throws {
        let files = try SQLFiles.bundled()
        try #require(files.bridges.contains { $0.name == "0012_history" })
        // Without the bridge the claim goes on and leaves a running run no lease names (never rescued if its worker
        // dies): the case the bridge exists for, and the proof this test can fail.
        for bridged in [false, true] {
            let settings = try await TestDatabase.createEmpty()
            try await TestDatabase.withClient(settings) { client in
                try await databaseBefore0012(client, files)
                // 0012 committed, the functions not yet.
                _ = try await Migrator(client: client, files: files.through(12, bridges: bridged), logger: TestDatabase.logger)
                    .migrate()
                if bridged {
                    for (call, name) in [("SELECT run_id FROM tock.claim_runs(1, 1)", "tock.claim_runs"),
                                         ("SELECT tock.finish_run(1, 1, 'succeeded', 0)", "tock.finish_run"),
                                         ("SELECT tock.set_worker_state(1, 'stopped')", "tock.set_worker_state")] {
                        let refused = await #expect(throws: PSQLError.self) {
                            _ = try await client.query(PostgresQuery(unsafeSQL: call)).collect()
                        }
                        #expect(refused?.serverInfo?[.sqlState] == "55000", "\(call)")
                        #expect(refused?.serverInfo?[.message] == Self.upgrading(name), "\(call): \(String(reflecting: refused))")
                        #expect(refused?.serverInfo?[.hint]?.contains("run tock migrate again") == true)
                    }
                } else {
                    #expect(try await client.query("SELECT run_id FROM tock.claim_runs(1, 1)").decode(Int64.self).all() == [1])
                }
                #expect(try await client.query(Self.leaseless).decode(Int.self).all() == [bridged ? 0 : 1])

                // The functions step replaces the bridge: the same calls work, with leases.
                _ = try await Migrator(client: client, files: files, logger: TestDatabase.logger).migrate()
                if bridged {
                    let claimed = try await client.query("SELECT run_id FROM tock.claim_runs(1, 1)").decode(Int64.self).all()
                    #expect(claimed == [1])
                    #expect(try await client.query(Self.leaseless).decode(Int.self).all() == [0])
                    #expect(try await client.query("SELECT tock.finish_run(1, 1, 'succeeded', 0)").decode(Bool.self).all() == [true])
                    #expect(try await client.query("SELECT status FROM tock.run_history WHERE id = 1").decode(String.self).all()
                        == ["succeeded"])
                }
            }
        }
    }

    @Test("a claim of the release before that waits for 0012's lock and goes on against the new table is refused")
    func oldClaimUnderWayAtCommit() async throws {
        let files = try SQLFiles.bundled()
        let migration = try #require(files.migrations.first { $0.version == 12 })
        for bridged in [false, true] {
            let settings = try await TestDatabase.createEmpty()
            try await TestDatabase.withClient(settings) { client in
                try await databaseBefore0012(client, files)
                try await client.withConnection { migrating in
                    _ = try await migrating.query("""
                        CREATE FUNCTION pg_temp.exec(script text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE script; END $$
                        """, logger: TestDatabase.logger).collect()
                    _ = try await migrating.query("BEGIN", logger: TestDatabase.logger).collect()
                    _ = try await migrating.query("SELECT pg_temp.exec(\(migration.text))", logger: TestDatabase.logger).collect()
                    for bridge in bridged ? files.bridges.filter({ $0.name == migration.name }) : [] {
                        _ = try await migrating.query("SELECT pg_temp.exec(\(bridge.text))", logger: TestDatabase.logger).collect()
                    }
                    // The old claim starts before 0012 commits and waits for its lock on tock.runs.
                    let claim = Task {
                        try await client.query("SELECT run_id FROM tock.claim_runs(1, 1)").decode(Int64.self).all()
                    }
                    var waiting = 0
                    for _ in 0..<500 where waiting == 0 {
                        waiting = try await migrating.query("""
                            SELECT count(*)::int FROM pg_locks
                            WHERE NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                            """, logger: TestDatabase.logger).decode(Int.self).all().first ?? 0
                        if waiting == 0 { try await Task.sleep(for: .milliseconds(10)) }
                    }
                    try #require(waiting > 0, "the old claim never waited for 0012's lock")
                    _ = try await migrating.query("COMMIT", logger: TestDatabase.logger).collect()
                    let result = await claim.result
                    if bridged {
                        guard case .failure(let error) = result, let refused = error as? PSQLError else {
                            Issue.record("the old claim was not refused: \(result)")
                            return
                        }
                        #expect(refused.serverInfo?[.sqlState] == "55000")
                        #expect(refused.serverInfo?[.message]
                            == Self.upgrading("tock.runs"))
                    } else {
                        #expect(try result.get() == [1])
                    }
                }
                #expect(try await client.query(Self.leaseless).decode(Int.self).all() == [bridged ? 0 : 1])
            }
        }
    }

    @Test("between 0018's commit and the functions', a lease the release before's claim writes gets its pool and job")
    func oldLeasesCompletedByTheBridge() async throws {
        let files = try SQLFiles.bundled()
        // Without the bridge the lease has no job: the job list counts its running run as pending, and a job limit
        // would not count it at all. The proof this test can fail.
        for bridged in [false, true] {
            let settings = try await TestDatabase.createEmpty()
            try await TestDatabase.withClient(settings) { client in
                // At 0017 as its release left it: its functions step had dropped what 0012's bridge made.
                _ = try await Migrator(client: client, files: files.through(17, bridges: false), logger: TestDatabase.logger)
                    .migrate()
                // The release before 0018's claim, as far as it touches the tables: the run to running, its lease
                // with worker and run only.
                _ = try await client.query("""
                    CREATE FUNCTION tock.claim_runs(p_worker bigint, p_max int, p_now timestamptz DEFAULT now(),
                                                    p_lease_token text DEFAULT NULL)
                    RETURNS TABLE (run_id bigint) LANGUAGE plpgsql AS $$
                    BEGIN
                        RETURN QUERY
                        WITH claimed AS (
                            UPDATE tock.runs r SET status = 'running', started_at = p_now, worker_id = p_worker
                            WHERE r.id IN (SELECT p.id FROM tock.runs p WHERE p.status = 'pending' ORDER BY p.id LIMIT p_max)
                            RETURNING r.id
                        ), leased AS (
                            INSERT INTO tock.run_leases (worker_id, run_id) SELECT p_worker, c.id FROM claimed c
                        )
                        SELECT c.id FROM claimed c;
                    END $$
                    """).collect()
                _ = try await client.query("""
                    INSERT INTO tock.jobs (name, script, spec, pool)
                    VALUES ('report', 'report.sh', ROW('manual', NULL, NULL, NULL, NULL, NULL, NULL, false, false, false), 'reports')
                    """).collect()
                _ = try await client.query("INSERT INTO tock.workers (name, host, pid, concurrency) VALUES ('h:1', 'h', 1, 4)").collect()
                let runId = try await client.query("INSERT INTO tock.runs (job_id, trigger, pool) VALUES (1, 'sql', 'reports') RETURNING id")
                    .decode(Int64.self).all().first ?? 0

                _ = try await Migrator(client: client, files: files.through(18, bridges: bridged), logger: TestDatabase.logger)
                    .migrate()
                #expect(try await client.query("SELECT run_id FROM tock.claim_runs(1, 1)").decode(Int64.self).all() == [runId])
                let lease = try await client.query("SELECT pool, job_id FROM tock.run_leases WHERE run_id = \(runId)")
                    .decode((String?, Int64?).self).all().first
                #expect(lease?.0 == (bridged ? "reports" : nil) && lease?.1 == (bridged ? 1 : nil), "\(String(describing: lease))")

                // The functions step drops the trigger; the job list counts the run as running.
                _ = try await Migrator(client: client, files: files, logger: TestDatabase.logger).migrate()
                let counts = try await client.query("SELECT running, pending FROM tock.job_overview WHERE name = 'report'")
                    .decode((Int64, Int64).self).all().first
                #expect(counts?.0 == (bridged ? 1 : 0) && counts?.1 == (bridged ? 0 : 1), "\(String(describing: counts))")
                #expect(try await client.query("""
                    SELECT count(*)::int FROM pg_trigger WHERE tgname = 'run_leases_completed_while_upgrading'
                    """).decode(Int.self).all() == [0])
            }
        }
    }

    @Test("a bridge runs in its migration's transaction and shows in the DBA's script")
    func bridgeInScript() async throws {
        let files = try SQLFiles.bundled()
        let settings = try await TestDatabase.createEmpty()
        let script = try await TestDatabase.withClient(settings, maximumConnections: 1) { client in
            let migrator = Migrator(client: client, files: files, logger: TestDatabase.logger)
            return migrator.script(try await migrator.plan())
        }
        // One transaction: the migration, its bridge, the record.
        let step = try #require(script.components(separatedBy: "\n-- 0012_history\nBEGIN;\n").last?
            .components(separatedBy: "\nCOMMIT;\n").first)
        let migration = try #require(files.migrations.first { $0.version == 12 })
        let bridge = try #require(files.bridges.first { $0.name == "0012_history" })
        let parts = [migration.text.trimmingCharacters(in: .newlines), "-- bridges/0012_history.sql",
                     bridge.text.trimmingCharacters(in: .newlines), "INSERT INTO tock.migrations"]
        let positions = parts.map { step.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
    }

    /// `tock migrate` on `settings` with a copy of the repository's SQL (TOCK_SQL_DIR) to which `text` is added as
    /// `path`; the copy's directory, for the messages that name it.
    private func migrate(_ settings: ConnectionSettings, withSQLAnd path: String, _ text: String)
        async throws -> (ProgramResult, String) {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let copy = directory + "/sql"
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: sql).resolvingSymlinksInPath().path, toPath: copy)
        try text.write(toFile: copy + "/" + path, atomically: true, encoding: .utf8)
        let result = try await runProgramOffPool(tockBinary, ["migrate"], environment: [
            "DATABASE_URL": settings.url(), "PATH": "/usr/bin:/bin", "TOCK_SQL_DIR": copy], directory: directory)
        return (result, copy)
    }

    @Test("a bridge that names no migration is refused before anything runs, naming the file")
    func strayBridgeRefused() async throws {
        let settings = try await TestDatabase.createEmpty()
        let (result, copy) = try await migrate(settings, withSQLAnd: "bridges/0012_histroy.sql", "SELECT 1;\n")
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(copy)/bridges/0012_histroy.sql names no migration"), "\(result.stderr)")
        #expect(try await schemaFingerprint(settings) == "")
    }

    @Test("a failing migration prints one line naming the file and PostgreSQL's message, and leaves nothing behind")
    func failingMigrationOneLine() async throws {
        let settings = try await TestDatabase.create()
        let (result, _) = try await migrate(settings, withSQLAnd: "migrations/9999_broken.sql", """
            CREATE TABLE tock.half_done (x int);
            ALTER TABLE tock.no_such_table ADD COLUMN y int;
            """)
        #expect(result.status == 1)
        #expect(result.stderr == "error: migration 9999_broken.sql failed: relation \"tock.no_such_table\" does not exist (SQLSTATE 42P01)\n",
                "\(result.stderr)")
        try await TestDatabase.withClient(settings, maximumConnections: 1) { client in
            let left = try await client.query("""
                SELECT to_regclass('tock.half_done') IS NULL, NOT EXISTS (SELECT FROM tock.migrations WHERE version = 9999)
                """).decode((Bool, Bool).self).all().first
            #expect(left?.0 == true && left?.1 == true)
        }
    }
}
