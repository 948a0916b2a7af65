import Foundation
import PostgresNIO
import Testing
@testable import TockCluster
import TockCore
import TockPostgres
import TockTesting

/// A primary and its streaming standby, and Tock's processes given both. In FaultTests (an extension, so its
/// `.serialized` holds): two clusters of their own, one stopped and the other promoted.
extension FaultTests {
    @Test("failover: the primary stops and its standby is promoted; worker, scheduler and API move to it by themselves, and every acknowledged run runs")
    func failover() async throws {
        let executions = ExecutionLog("failover")
        defer { executions.remove() }
        let directory = try makeScriptsDirectory(["scripts/note.sh": "#!/bin/sh\n\(executions.record)\n",
                                                  "scripts/slow.sh": "#!/bin/sh\n\(executions.record)\nsleep 0.5\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent("tock-failover-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let (primary, standby) = (EmbeddedCluster(directory: base + "/a", logger: TestDatabase.logger),
                                  EmbeddedCluster(directory: base + "/b", logger: TestDatabase.logger))
        for home in [base, base + "/a", base + "/b"] {
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        defer {
            try? primary.stop(mode: "immediate")
            try? standby.stop(mode: "immediate")
            try? FileManager.default.removeItem(atPath: base)
        }
        var primaryOwner = try await offThePool { try primary.start() }
        primaryOwner.database = "tock"
        let owner = primaryOwner
        let migrate = try TockProcess(["migrate"], settings: owner, directory: directory)
        #expect(try await migrate.wait() == 0, "\(migrate.log)")

        // The standby: a base backup of the primary that streams from it (-R), on a socket of its own.
        let binaries = try PostgresBinaries.find()
        let asServer = EmbeddedCluster.isRoot ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : []
        try await offThePool {
            try FileManager.default.createDirectory(atPath: standby.clusterDirectory, withIntermediateDirectories: true)
            if EmbeddedCluster.isRoot { try primary.runProcess(["/bin/chown", "postgres:postgres", standby.clusterDirectory], what: "chown") }
            try primary.runProcess(asServer + [
                (URL(fileURLWithPath: binaries.pgCtl).resolvingSymlinksInPath().deletingLastPathComponent().path + "/pg_basebackup"),
                "-h", primary.socketDirectory,
                "-p", "\(EmbeddedCluster.port)", "-U", EmbeddedCluster.superuser, "-D", standby.dataDirectory,
                "-R", "-X", "stream", "-c", "fast",
            ], what: "pg_basebackup", environment: ["PGPASSWORD": owner.password ?? ""])
            let conf = try String(contentsOfFile: standby.dataDirectory + "/postgresql.conf", encoding: .utf8)
            try (conf + "\nunix_socket_directories = '\(standby.socketDirectory)'\n")
                .write(toFile: standby.dataDirectory + "/postgresql.conf", atomically: false, encoding: .utf8)
            try FileManager.default.copyItem(atPath: primary.passwordFile, toPath: standby.passwordFile)
        }
        var standbyOwner = try await offThePool { try standby.start() }
        standbyOwner.database = "tock"

        // Every Tock process is given both servers, the standby first: each must find the primary itself.
        var bothServers = standbyOwner
        bothServers.servers = [standbyOwner.endpoint, owner.endpoint]
        bothServers.requireWritable = true
        let both = bothServers
        let port = try TestPorts.free()
        let scheduler = try TockProcess(["scheduler"], settings: both, directory: directory)
        let worker = try TockProcess(["worker", "--concurrency", "4", "--scripts-dir", directory + "/scripts"],
                                     settings: both, directory: directory)
        let api = try TockProcess(["api", "--api-port", "\(port)"], settings: both, directory: directory)
        // A second worker, stopped (SIGSTOP) across the failover and let go 3 s after the promotion: the new primary's
        // first rescue must not take it for dead (its session lock and heartbeats came over from the old primary).
        let paused = try TockProcess(["worker", "--name", "paused", "--scripts-dir", directory + "/scripts"],
                                     settings: both, directory: directory)
        let processes = ["scheduler": scheduler, "worker": worker, "api": api, "paused": paused]
        defer { processes.values.forEach { $0.signal(SIGKILL) } }
        let logs: @Sendable () -> String = { processes.map { "\($0.key): \($0.value.log.suffix(3000))" }.sorted().joined(separator: "\n---\n") }
        let trigger: @Sendable () async -> Int64? = {
            let response = try? await HTTPStream.exchange(port: port, """
                POST /api/v1/jobs/now/trigger HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Content-Length: 2\r\nConnection: close\r\n\r\n{}
                """)
            guard let response, response.hasPrefix("HTTP/1.1 202"),
                  let location = response.range(of: "/api/v1/runs/") else { return nil }
            return Int64(response[location.upperBound...].prefix { $0.isNumber })
        }

        let acknowledged = Locked<[Int64]>([])
        let inFlight = try await TestDatabase.withClient(owner) { client in
            _ = try await client.query("""
                SELECT tock.create_job_json('{"name": "now", "script": "slow.sh", "overlap": "allow"}'),
                       tock.create_job_json('{"name": "every", "script": "note.sh", "schedule": "every 1s"}')
                """).collect()
            let ready = try await eventually(timeout: .seconds(60), interval: .milliseconds(100)) {
                try await client.query("SELECT count(*)::int FROM tock.run_history WHERE job_name = 'every' AND status = 'succeeded'")
                    .decode(Int.self).all().first ?? 0 >= 2
            }
            try #require(ready, "\(logs())")
            // Runs acknowledged by the API, some still pending when the primary stops.
            for _ in 1...30 {
                if let run = await trigger() { acknowledged.withLock { $0.append(run) } }
            }
            try #require(acknowledged.value.count == 30, "\(logs())")
            return try await client.query("""
                SELECT count(*)::int FROM tock.runs WHERE id = ANY(\(acknowledged.value)) AND status IN ('pending', 'running')
                """).decode(Int.self).all().first ?? 0
        }
        #expect(inFlight > 0, "the failover is to catch acknowledged runs still in flight")

        // The primary stops (fast: its last WAL reaches the standby), and the standby is promoted.
        paused.signal(SIGSTOP)
        try await offThePool { try primary.stop(mode: "fast") }
        let stoppedAt = ContinuousClock.now
        // Meanwhile a command given both servers says why it cannot work, at once.
        let meanwhile = try await runTock(["job", "list"], settings: both, directory: directory)
        #expect(meanwhile.status == 5 && meanwhile.stderr.contains("no server in DATABASE_URL accepts writes")
                && meanwhile.stderr.contains("read-only"), "\(meanwhile)")
        try await offThePool {
            try primary.runProcess(asServer + [binaries.pgCtl, "promote", "-w", "-D", standby.dataDirectory], what: "pg_ctl promote")
        }
        let promotedAt = ContinuousClock.now
        try await TestDatabase.withClient(standbyOwner) { client in
            let promotedOnServer = try await client.query("SELECT now()").decode(Date.self).all()[0]
            // The first run to start after the promotion: the scheduler's, or one the worker had waiting.
            let firstRun = try await eventually(timeout: .seconds(90), interval: .milliseconds(50)) {
                try await client.query("SELECT count(*)::int FROM tock.runs WHERE started_at > \(promotedOnServer)")
                    .decode(Int.self).all().first ?? 0 > 0
            }
            let tookToRun = ContinuousClock.now - promotedAt
            try #require(firstRun, "no run started after the promotion\n\(logs())")
            try await Task.sleep(until: promotedAt + .seconds(3))
            paused.signal(SIGCONT)
            let pausedBack = try await eventually(timeout: .seconds(60), interval: .milliseconds(200)) {
                let state = try await client.query(
                    "SELECT state FROM tock.workers WHERE name = 'paused'").decode(String.self).all().first
                return paused.log.contains("primary moved") && state == "running"
            }
            #expect(pausedBack, "the paused worker: \(paused.log.suffix(3000))")
            // The API moved too: it acknowledges runs again.
            let apiMoved = try await eventually(timeout: .seconds(60), interval: .milliseconds(100)) {
                guard let run = await trigger() else { return false }
                acknowledged.withLock { $0.append(run) }
                return true
            }
            #expect(apiMoved, "\(logs())")
            let acknowledged = acknowledged.value
            let everyFiredAfter = try await eventually(timeout: .seconds(30)) {
                try await client.query("""
                    SELECT count(*)::int FROM tock.run_history WHERE job_name = 'every' AND status = 'succeeded'
                       AND scheduled_for > \(promotedOnServer)
                    """).decode(Int.self).all().first ?? 0 >= 2
            }
            #expect(everyFiredAfter, "the scheduler fires on the new primary\n\(logs())")

            // Every acknowledged run is there and succeeds; which ran twice, if any, is printed.
            let allRan = try await eventually(timeout: .seconds(60), interval: .milliseconds(200)) {
                try await client.query("""
                    SELECT count(*)::int FROM tock.run_history WHERE id = ANY(\(acknowledged)) AND status = 'succeeded'
                    """).decode(Int.self).all().first == acknowledged.count
            }
            let statuses = try await client.query("""
                SELECT status || ' ' || count(*) FROM tock.run_history WHERE id = ANY(\(acknowledged)) GROUP BY status
                """).decode(String.self).all()
            #expect(allRan, "acknowledged runs: \(statuses)\n\(logs())")
            // No worker was taken for lost: the promoted server counts its session locks from the promotion.
            let lost = try await client.query("""
                SELECT count(*)::int FROM tock.run_history WHERE error LIKE '%was lost%'
                """).decode(Int.self).all().first ?? -1
            #expect(lost == 0, "\(lost) runs failed as a lost worker's\n\(logs())")
            let listed = try await runTock(["job", "list"], settings: both, directory: directory)
            #expect(listed.status == 0 && listed.stdout.contains("every"), "\(listed)")
            let twice = executions.repeatedRuns()
            print("fault 14: failover: primary stopped, standby promoted \(promotedAt - stoppedAt) later; the first run started \(tookToRun) after the promotion; \(acknowledged.count) acknowledged runs (\(inFlight) in flight at the stop) all succeeded; ran twice: \(twice.isEmpty ? "none" : "\(twice)")")
            #expect(twice.isEmpty, "a clean stop streams every claim to the standby: \(twice)")
            for (name, process) in processes {
                #expect(process.isRunning, "\(name) exited\n\(process.log.suffix(3000))")
                #expect(process.log.contains("primary moved"), "\(name)\n\(process.log.suffix(3000))")
            }
        }
    }
}
