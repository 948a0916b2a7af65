import Foundation
import PostgresNIO
import Synchronization
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

/// Login roles for these tests, one per Tock role and one with none (roles are cluster-wide: created once).
enum TestRoles {
    static let worker = "tock_t_worker"
    static let admin = "tock_t_admin"
    static let viewer = "tock_t_viewer"
    static let nobody = "tock_t_nobody"

    private static let created = Mutex<Task<Void, any Error>?>(nil)

    static func ensure(_ settings: ConnectionSettings) async throws {
        let task = created.withLock { task in
            if let task { return task }
            let new = Task {
                try await TestDatabase.withClient(settings) { client in
                    for (login, role) in [(worker, "tock_worker"), (admin, "tock_admin"), (viewer, "tock_viewer"), (nobody, "")] {
                        let membership = role.isEmpty ? "" : " IN ROLE \(role)"
                        _ = try await client.query(PostgresQuery(unsafeSQL: """
                            DO $$ BEGIN
                                CREATE ROLE \(login) LOGIN PASSWORD '\(TestDatabase.rolePassword)'\(membership);
                            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                                ALTER ROLE \(login) PASSWORD '\(TestDatabase.rolePassword)';
                            END $$
                            """)).collect()
                    }
                }
            }
            task = new
            return new
        }
        try await task.value
    }

    /// `settings` as another login role.
    static func settings(_ settings: ConnectionSettings, as user: String) -> ConnectionSettings {
        var copy = settings
        copy.username = user
        copy.password = TestDatabase.rolePassword
        return copy
    }
}

/// nil when `sql` succeeded, else its SQLSTATE.
func sqlState(_ client: PostgresClient, _ sql: String) async -> String? {
    do {
        _ = try await client.query(PostgresQuery(unsafeSQL: sql)).collect()
        return nil
    } catch let error as PSQLError {
        return error.serverInfo?[.sqlState] ?? "connection"
    } catch {
        return "other"
    }
}

@Suite("roles: tock_admin, tock_worker, tock_viewer may do what they should and nothing more")
struct PrivilegesTests {
    static let insufficientPrivilege = "42501"

    @Test("each role's allowed calls succeed and everything else is refused with 42501")
    func roleMatrix() async throws {
        try await TestDatabase.withFresh { owner, settings in
            try await TestRoles.ensure(settings)
            _ = try await owner.createJob(json: #"{"name": "report", "script": "report.sh", "schedule": "every 5 minutes"}"#)

            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.admin)) { admin in
                for allowed in [
                    #"SELECT tock.create_job_json('{"name": "adm", "script": "a.sh"}')"#,
                    "SELECT tock.update_job('adm', '{\"priority\": 70}')", "SELECT tock.run_now('report')",
                    "SELECT tock.pause_job('adm')", "SELECT tock.resume_job('adm')", "SELECT tock.reset_job('report')",
                    "SELECT tock.tick()", "SELECT tock.rescue()", "SELECT tock.purge_history()",
                    "SELECT * FROM tock.job_overview", "SELECT * FROM tock.run_history", "SELECT * FROM tock.stuck_runs",
                    "SELECT tock.stats()", "SELECT tock.delete_job('adm')",
                    "SELECT * FROM tock.add_hook('report', 'failed', 'https://hooks.example.com/x')",
                    "SELECT * FROM tock.hook_list", "SELECT * FROM tock.delivery_overview", "SELECT * FROM tock.delivery_attempt_log",
                    "SELECT * FROM tock.claim_deliveries(10)",
                ] {
                    #expect(await sqlState(admin, allowed) == nil, "tock_admin: \(allowed)")
                }
                for refused in [
                    "SELECT * FROM tock.runs", "UPDATE tock.jobs SET priority = 1", "DELETE FROM tock.runs",
                    "INSERT INTO tock.run_output (run_id) VALUES (1)", "SELECT * FROM tock.claim_runs(1, 1)",
                    "SELECT tock.register_worker('h', 1, 1)", "SELECT tock.check_job_json('{}')",
                ] {
                    #expect(await sqlState(admin, refused) == Self.insufficientPrivilege, "tock_admin: \(refused)")
                }
            }

            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.worker)) { worker in
                let token = WorkerLease.newToken()
                let id = try #require(try await worker.query(
                    "SELECT tock.register_worker('h', 1, 2, p_lease_token => \(token))").decode(Int64.self).all().first)
                let claimed = try await worker.query("SELECT run_id FROM tock.claim_runs(\(id), 5, p_lease_token => \(token))")
                    .decode(Int64.self).all()
                #expect(claimed.count == 1)
                let lease = "p_lease_token => '\(token)'"
                for allowed in [
                    "SELECT tock.heartbeat(\(id), \(lease))", "SELECT tock.report_output(\(claimed[0]), \(id), 'so far', 6, false, \(lease))",
                    "SELECT tock.cancel_requests(\(id), \(lease))", "SELECT tock.next_delayed_run()",
                    "SELECT tock.finish_run(\(claimed[0]), \(id), 'succeeded', 0, NULL, 'done', 4, false, \(lease))",
                    "SELECT pg_try_advisory_lock(tock.worker_lock_key(), \(id)::int)", "SELECT tock.hold_worker_session(\(id), \(lease))",
                    "SELECT tock.set_worker_state(\(id), 'stopping', \(lease))",
                ] {
                    #expect(await sqlState(worker, allowed) == nil, "tock_worker: \(allowed)")
                }
                for refused in [
                    "SELECT * FROM tock.runs", "SELECT * FROM tock.jobs", "SELECT * FROM tock.job_overview",
                    "SELECT * FROM tock.run_logs", "UPDATE tock.jobs SET priority = 1", "UPDATE tock.runs SET status = 'pending'",
                    #"SELECT tock.create_job_json('{"name": "evil", "script": "x.sh"}')"#, "SELECT tock.update_job('report', '{\"script\": \"x.sh\"}')",
                    "SELECT tock.run_now('report')", "SELECT tock.delete_job('report')", "SELECT tock.tick()",
                    "SELECT tock.stats()", "SELECT * FROM tock.config",
                    "SELECT * FROM tock.run_now_keyed('report', p_key => 'k')", "SELECT * FROM tock.trigger_keys",
                    "SELECT * FROM tock.claim_deliveries(10)", "SELECT * FROM tock.hooks", "SELECT * FROM tock.hook_list",
                ] {
                    #expect(await sqlState(worker, refused) == Self.insufficientPrivilege, "tock_worker: \(refused)")
                }
            }

            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.viewer)) { viewer in
                for allowed in [
                    "SELECT * FROM tock.job_overview", "SELECT * FROM tock.run_history", "SELECT * FROM tock.run_logs",
                    "SELECT * FROM tock.worker_overview", "SELECT * FROM tock.queue_depth", "SELECT * FROM tock.lag",
                    "SELECT * FROM tock.stuck_runs", "SELECT * FROM tock.job_stats", "SELECT tock.stats()",
                    "SELECT * FROM tock.schedule_preview('report', 3)", "SELECT * FROM tock.gauges()",
                    "SELECT tock.describe_schedule('daily at 06:00')",
                    // The hooks as people may see them (origin only, no secret): the API's and CLI's lists.
                    "SELECT * FROM tock.hook_list", "SELECT * FROM tock.delivery_overview", "SELECT * FROM tock.delivery_attempt_log",
                ] {
                    #expect(await sqlState(viewer, allowed) == nil, "tock_viewer: \(allowed)")
                }
                for refused in [
                    "SELECT tock.run_now('report')", "SELECT tock.pause_job('report')", "SELECT * FROM tock.runs",
                    "INSERT INTO tock.jobs (name, script) VALUES ('v', 'v.sh')", "SELECT tock.register_worker('h', 1, 1)",
                    "SELECT * FROM tock.claim_runs(1, 1)", "SELECT tock.cancel(1)", "SELECT tock.set_history_retention('1 day')",
                    "SELECT * FROM tock.run_now_keyed('report', p_key => 'k')", "SELECT * FROM tock.trigger_keys",
                    // Secrets and whole URLs: the schema's owner's, and a delivery service's (tock_admin).
                    "SELECT secret FROM tock.hooks", "SELECT * FROM tock.deliveries", "SELECT * FROM tock.claim_deliveries(10)",
                    "SELECT * FROM tock.add_hook('report', 'failed', 'https://hooks.example.com/x')",
                    "SELECT tock.retry_delivery(1)",
                ] {
                    #expect(await sqlState(viewer, refused) == Self.insufficientPrivilege, "tock_viewer: \(refused)")
                }
            }

            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.nobody)) { nobody in
                for refused in ["SELECT * FROM tock.job_overview", "SELECT tock.run_now('report')", "SELECT * FROM tock.runs"] {
                    #expect(await sqlState(nobody, refused) == Self.insufficientPrivilege, "no Tock role: \(refused)")
                }
            }
        }
    }

    @Test("a tock_worker member cannot finish, heartbeat, hand back or cancel-check another worker's runs, nor claim early")
    func workerIdentityIsTheLeaseToken() async throws {
        try await TestDatabase.withFresh { owner, settings in
            try await TestRoles.ensure(settings)
            _ = try await owner.createJob(json: #"{"name": "report", "script": "report.sh"}"#)
            let run = try await owner.runNow("report")
            let later = try await owner.runNow("report")
            _ = try await owner.client.query("UPDATE tock.runs SET run_after = now() + interval '2 hours' WHERE id = \(later)").collect()
            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.worker)) { client in
                let victimToken = WorkerLease.newToken(), attackerToken = WorkerLease.newToken()
                func register(_ token: String) async throws -> Int64 {
                    try #require(try await client.query("SELECT tock.register_worker('h', 1, 2, p_lease_token => \(token))")
                        .decode(Int64.self).all().first)
                }
                let victim = try await register(victimToken), attacker = try await register(attackerToken)
                // Without a token, a tock_worker member cannot even register.
                #expect(await sqlState(client, "SELECT tock.register_worker('h', 1, 2)") == Self.insufficientPrivilege)
                // Claiming as the victim, or as oneself two hours ahead of the clock, is refused.
                #expect(await sqlState(client, "SELECT * FROM tock.claim_runs(\(victim), 5, p_lease_token => '\(attackerToken)')")
                    == Self.insufficientPrivilege)
                #expect(await sqlState(client, """
                    SELECT * FROM tock.claim_runs(\(attacker), 5, now() + interval '2 hours', '\(attackerToken)')
                    """) == Self.insufficientPrivilege)
                let claimed = try await client.query("SELECT run_id FROM tock.claim_runs(\(victim), 5, p_lease_token => \(victimToken))")
                    .decode(Int64.self).all()
                #expect(claimed == [run], "the run not yet due stays pending")
                for forged in [
                    "SELECT tock.finish_run(\(run), \(victim), 'succeeded', 0, NULL, 'FORGED OUTPUT')",
                    "SELECT tock.finish_run(\(run), \(victim), 'succeeded', 0, NULL, 'FORGED OUTPUT', 13, false, now(), '\(attackerToken)')",
                    "SELECT tock.heartbeat(\(victim), now(), '{}', '0 s', '\(attackerToken)')",
                    "SELECT tock.heartbeat(\(victim), now(), '{}', '0 s')",
                    "SELECT tock.release_run(\(run), \(victim), p_lease_token => '\(attackerToken)')",
                    "SELECT tock.report_output(\(run), \(victim), 'FORGED', 6, false, p_lease_token => '\(attackerToken)')",
                    "SELECT tock.set_worker_state(\(victim), 'stopped', p_lease_token => '\(attackerToken)')",
                    "SELECT tock.hold_worker_session(\(victim), '\(attackerToken)')",
                    "SELECT tock.cancel_requests(\(victim), '\(attackerToken)')",
                ] {
                    #expect(await sqlState(client, forged) == Self.insufficientPrivilege, "\(forged)")
                }
                // The run is still the victim's, running, with no output; the victim itself can finish it.
                let state = try await owner.run(run)
                #expect(state.status == "running" && state.workerId == victim && (state.output ?? "").isEmpty)
                #expect(try await client.query("""
                    SELECT tock.finish_run(\(run), \(victim), 'succeeded', 0, NULL, 'real', 4, false, p_lease_token => \(victimToken))
                    """).decode(Bool.self).all() == [true])
                #expect(try await owner.run(run).output == "real")
            }
        }
    }

    @Test("a tock_admin member cannot move the clock or rescue live workers; a login without grants cannot fake a live session")
    func adminClockAndLockSpoofing() async throws {
        try await TestDatabase.withFresh { owner, settings in
            try await TestRoles.ensure(settings)
            _ = try await owner.createJob(json: #"{"name": "report", "script": "report.sh"}"#)
            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.admin)) { admin in
                for refused in [
                    "SELECT tock.run_now('report', 'sql', '-infinity')", "SELECT tock.run_now('report', 'sql', now() + interval '1 day')",
                    "SELECT tock.purge_history('infinity')", "SELECT tock.tick(now() + interval '1 hour')",
                    "SELECT tock.rescue(p_silent_after => '-1 hour')", "SELECT tock.rescue(p_orphaned_after => '-30 days')",
                    "SELECT tock.rescue(now() + interval '1 hour')",
                ] {
                    let state = await sqlState(admin, refused)
                    #expect(state == "22023" || state == Self.insufficientPrivilege, "tock_admin: \(refused) gave \(state ?? "success")")
                }
                #expect(await sqlState(admin, "SELECT tock.run_now('report')") == nil)
            }
            // A worker that held its session lock and then went silent is dead, whoever else takes that lock; and a
            // shared lock on the schedulers' key from a login without grants is not a scheduler.
            let worker = try await owner.registerWorker(host: "h", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
            _ = try await owner.client.query("UPDATE tock.workers SET session_locked = true, session_pid = -1 WHERE id = \(worker)").collect()
            try await TestDatabase.withClient(TestRoles.settings(settings, as: TestRoles.nobody)) { nobody in
                try await nobody.withConnection { connection in
                    _ = try await connection.query("SELECT pg_advisory_lock(1953459051, \(worker)::int)", logger: TestDatabase.logger).collect()
                    _ = try await connection.query("SELECT pg_advisory_lock_shared(1953459053, 0)", logger: TestDatabase.logger).collect()
                    #expect(try await owner.client.query("SELECT tock.worker_session_alive(\(worker))").decode(Bool.self).all() == [false])
                    #expect(try await owner.schedulersAlive() == 0)
                }
            }
        }
    }

    @Test("a real worker connected as a tock_worker member runs a job that a tock_admin member scheduled")
    func workerAndSchedulerUnderTheirRoles() async throws {
        let directory = try makeScriptsDirectory(["hello.sh": "#!/bin/sh\necho \"hello from $TOCK_JOB\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { owner, settings in
            try await TestRoles.ensure(settings)
            let workerSettings = TestRoles.settings(settings, as: TestRoles.worker)
            let adminSettings = TestRoles.settings(settings, as: TestRoles.admin)
            try await TestDatabase.withClient(workerSettings) { workerClient in
                try await TestDatabase.withClient(adminSettings) { adminClient in
                    let workerDatabase = Database(client: workerClient, logger: TestDatabase.logger, settings: workerSettings)
                    let adminDatabase = Database(client: adminClient, logger: TestDatabase.logger, settings: adminSettings)
                    let configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
                    let worker = try Worker(database: workerDatabase, settings: workerSettings, configuration: configuration,
                                            logger: TestDatabase.logger)
                    let scheduler = Scheduler(database: adminDatabase, settings: adminSettings, sweepInterval: TestSweep.interval,
                                              logger: TestDatabase.logger)
                    // Once (under stress-ng, in a full run) the worker held its lock and beat, and never claimed a due
                    // run: what it did last tells where the wake-up went.
                    let signals = SignalLog(worker.testSignals.subscribe())
                    _ = try await adminDatabase.createJob(json: #"{"name": "hello", "script": "hello.sh", "schedule": "every 1 second"}"#)
                    try await withServices([scheduler, worker]) { () async throws -> Void in
                        // 60 s, as where other processes start first: in full runs its worker registered 15-20 s
                        // after the suite's other workers (passing in 16-26 s), and once not within 20 s.
                        let ranTwice = try await eventually(timeout: .seconds(60)) {
                            try await adminDatabase.runs(job: "hello", status: .succeeded).count >= 2
                        }
                        // On failure, the runs and the worker tell where it stalled.
                        let seen = try await adminDatabase.runs(job: "hello").map {
                            "\($0.id) \($0.status) after \($0.runAfter) started \($0.startedAt.map { "\($0)" } ?? "-") error \($0.error ?? "-")"
                        }
                        let workers = try await owner.client.query(
                            "SELECT format('%s %s locked=%s heartbeat %s ago', id, state, session_locked, now() - last_heartbeat_at) FROM tock.workers")
                            .decode(String.self).all()
                        let delayed = try await owner.client.query(
                            "SELECT format('%s at %s', tock.next_delayed_run(now(), id), now()) FROM tock.workers").decode(String.self).all()
                        #expect(ranTwice, "runs: \(seen); workers: \(workers); next delayed run: \(delayed); last signals: \(signals.all.suffix(30))")
                        let run = try #require(try await adminDatabase.runs(job: "hello", status: .succeeded).first)
                        #expect(try await adminDatabase.run(run.id).output == "hello from hello\n")
                        #expect(try await owner.schedulersAlive() == 1)
                    }
                    // The worker registered, heartbeat and stopped under its role.
                    #expect(try await owner.workers().map(\.state) == ["stopped"])
                }
            }
        }
    }

    @Test("a role without the privilege gets a forbidden error that names the roles to use")
    func forbiddenMessage() async throws {
        try await TestDatabase.withFresh { _, settings in
            try await TestRoles.ensure(settings)
            let viewerSettings = TestRoles.settings(settings, as: TestRoles.viewer)
            try await TestDatabase.withClient(viewerSettings) { client in
                let viewer = Database(client: client, logger: TestDatabase.logger, settings: viewerSettings)
                let error = await #expect(throws: TockError.self) {
                    _ = try await viewer.createJob(json: #"{"name": "x", "script": "x.sh"}"#)
                }
                #expect(error?.kind == .forbidden)
                #expect(error?.message.contains("tock_admin") == true, "\(error?.message ?? "")")
            }
        }
    }
}
