import Foundation
import PostgresNIO
import Testing
import TockCluster
import TockCore
import TockPostgres
import TockTesting

/// More workers than PostgreSQL has connections for. In FaultTests (an extension, so its `.serialized` holds): 30
/// processes and a cluster of their own want the machine to themselves.
extension FaultTests {
    @Test("30 workers against max_connections = 25: those without a connection say so and wait; every run runs once; freed connections let the rest in")
    func connectionExhaustion() async throws {
        let executions = ExecutionLog("exhaustion")
        defer { executions.remove() }
        let directory = try makeScriptsDirectory(["scripts/quick.sh": "#!/bin/sh\n\(executions.record)\nsleep 0.2\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A cluster of its own: max_connections needs a restart.
        var own = try await OwnCluster("exhaustion", migratingFrom: directory)
        defer { own.remove() }
        let password = "exhaustion-worker-password-0123456789"
        try await TestDatabase.withClient(own.owner) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: """
                CREATE ROLE exhaustion_worker LOGIN PASSWORD '\(password)' IN ROLE tock_worker
                """)).collect()
            // 25, of which 3 are kept for superusers: the test's own connections, never the workers'.
            _ = try await client.query("ALTER SYSTEM SET max_connections = 25").collect()
        }
        try await own.restart()
        let owner = own.owner
        var forWorkers = owner
        (forWorkers.username, forWorkers.password) = ("exhaustion_worker", password)
        let (settings, workerSettings) = (owner, forWorkers)

        try await TestDatabase.withClient(settings) { client in
            let database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            // Two attempts: a claim whose answer a worker never got (its connection failed while the server was
            // full) stays on that worker; when the worker stops before a heartbeat could hand it back, the
            // scheduler's rescue below fails it over, and its retry is the run's one execution.
            var quick = JobDefinition(name: "quick", script: "quick.sh")
            quick.maxAttempts = 2
            _ = try await database.createJob(quick)
            _ = try await client.query("UPDATE tock.jobs SET overlap = 'allow'").collect()
            // 30 workers of concurrency 1: each wants its LISTEN connection and a few in its pool (docs/operations.md,
            // "Connections"), far beyond the 22 the server has for them.
            let workers = try (1...30).map { index in
                try TockProcess(["worker", "--name", "w\(index)", "--concurrency", "1"], settings: workerSettings, directory: directory)
            }
            defer { workers.forEach { $0.signal(SIGKILL) } }
            _ = try await client.query("SELECT tock.run_now('quick') FROM generate_series(1, 60)").collect()
            // The logs of the workers holding runs still running: what a worker that ran a script waits on.
            @Sendable func holderLogs() async throws -> [String] {
                let holders = try await client.query(
                    "SELECT DISTINCT worker_name FROM tock.run_history WHERE status = 'running' AND worker_name IS NOT NULL")
                    .decode(String.self).all()
                return workers.enumerated().filter { holders.contains("w\($0.offset + 1)") }
                    .map { "w\($0.offset + 1): \($0.element.log.suffix(4000))" }
            }

            // Every run runs, once, on the workers that got in; the others wait and say why. A worker's pool that
            // could not open a connection tries again after a backoff that grows to a minute (postgres-nio's), so a
            // run whose report waited on one finishes that much later: the bound is generous.
            // While the server stays full, a worker that got in may wait as long for a connection to report a run
            // it ran (a few runs stay running, for minutes): most runs finish, none twice, and the rest once
            // connections free, below.
            let most = try await eventually(timeout: .seconds(240), interval: .milliseconds(250)) {
                (try await client.query("SELECT count(*)::int FROM tock.run_history WHERE status = 'succeeded'")
                    .decode(Int.self).all().first ?? 0) >= 40
            }
            let statuses = try await client.query(
                "SELECT status || ' ' || count(*) || ': ' || string_agg(DISTINCT coalesce(error, '-'), '; ') FROM tock.run_history GROUP BY status")
                .decode(String.self).all()
            let stuck = most ? [] : try await holderLogs()
            #expect(most, "runs by status: \(statuses); workers holding running runs: \(stuck)")
            #expect(executions.repeatedRuns().isEmpty, "repeated: \(executions.repeatedRuns())")
            let registered = try await client.query("SELECT count(*)::int FROM tock.workers").decode(Int.self).all().first ?? 0
            // Those that never got in: still running, and saying why they wait.
            let waiting = workers.filter { !$0.log.contains("worker started") }
            print("fault 12: 30 workers, max_connections 25: \(registered) registered while 60 runs ran; \(waiting.count) waited for a connection; \(statuses)")
            #expect(registered >= 1 && registered < 30, "\(registered) workers registered")
            #expect(waiting.count > 0)
            let exited = workers.filter { !$0.isRunning }
            #expect(exited.isEmpty, "a worker without a connection must wait, not exit: \(exited.map { String($0.log.suffix(3000)) })")
            let said = try await eventually(timeout: .seconds(60), interval: .milliseconds(500)) {
                workers.allSatisfy { $0.log.contains("worker started") || ($0.log.contains("trying again") && $0.log.contains("53300")) }
            }
            #expect(said, "\(workers.filter { !$0.log.contains("worker started") && !$0.log.contains("trying again") }.map { String($0.log.suffix(1500)) })")

            // 25 stop: their connections free, and the 5 left are all in, registered and alive.
            for worker in workers.dropFirst(5) { worker.signal(SIGTERM) }
            for worker in workers.dropFirst(5) { _ = try await worker.wait(timeout: .seconds(60)) }
            let live = try await eventually(timeout: .seconds(150), interval: .milliseconds(500)) {
                Set(try await database.workers().filter(\.alive).map(\.name)) == Set((1...5).map { "w\($0)" })
            }
            let states = try await database.workers().map { "\($0.name) \($0.state) alive=\($0.alive)" }
            #expect(live, "workers: \(states); logs of w1-w5: \(workers.prefix(5).map { String($0.log.suffix(1500)) })")
            // A deployment's scheduler, now that there is room for it. A claim whose answer the full server lost
            // stays on its worker: when that worker's stop is recorded the run fails over to a retry at once, and
            // when the server was too full for that, the scheduler's rescue does it.
            let scheduler = try TockProcess(["scheduler"], settings: settings, directory: directory)
            defer { scheduler.signal(SIGKILL) }
            let more = try await client.query("SELECT tock.run_now('quick') FROM generate_series(1, 10)").decode(Int64.self).all()
            let all = try await eventually(timeout: .seconds(150)) {
                try await client.query("SELECT count(*)::int FROM tock.run_history WHERE status = 'succeeded'")
                    .decode(Int.self).all().first == 70
            }
            let left = all ? [] : try await holderLogs()
            #expect(all, "the runs enqueued once connections freed did not all run: \(more); workers holding running runs: \(left)")
            #expect(executions.entries().count == 70 && executions.repeatedRuns().isEmpty,
                    "\(executions.entries().count) executions; repeated: \(executions.repeatedRuns())")
        }
    }
}
