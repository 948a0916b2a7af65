import Foundation
import PostgresNIO
import Testing
import TockCluster
import TockCore
import TockPostgres
import TockTesting

/// One host of a fleet: a network namespace joined to the root namespace by a veth pair, on 10.213.N.0/24. The
/// root side (.1) is where PostgreSQL listens for it; cutting that side's link cuts the host off, as a pulled
/// cable would, while its processes live on.
struct NamespaceHost: Sendable {
    let index: Int
    let namespace: String
    let outside: String
    let inside: String

    init(index: Int, tag: String) {
        self.index = index
        // Interface names are at most 15 bytes.
        namespace = "tk\(tag)h\(index)"
        outside = "tk\(tag)o\(index)"
        inside = "tk\(tag)i\(index)"
    }

    var serverAddress: String { "10.213.\(index).1" }
    var name: String { "h\(index)" }

    static func ip(_ arguments: [String]) throws {
        let result = try runProgram("/usr/sbin/ip", arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/bin"], directory: "/")
        guard result.status == 0 else {
            throw TockError(.failed, "ip \(arguments.joined(separator: " ")): exit \(result.status): \(result.stderr)")
        }
    }

    func create() throws {
        try Self.ip(["netns", "add", namespace])
        try Self.ip(["link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace])
        try Self.ip(["addr", "add", serverAddress + "/24", "dev", outside])
        try Self.ip(["link", "set", outside, "up"])
        try Self.ip(["-n", namespace, "addr", "add", "10.213.\(index).2/24", "dev", inside])
        try Self.ip(["-n", namespace, "link", "set", inside, "up"])
        try Self.ip(["-n", namespace, "link", "set", "lo", "up"])
    }

    /// The cable pulled, and put back.
    func cut() throws { try Self.ip(["link", "set", outside, "down"]) }
    func restore() throws { try Self.ip(["link", "set", outside, "up"]) }

    /// Deleting the namespace deletes its end of the pair, and with it ours.
    func remove() {
        _ = try? Self.ip(["netns", "delete", namespace])
        _ = try? Self.ip(["link", "delete", outside])
    }
}

/// Three hosts against one PostgreSQL on TCP. In FaultTests (an extension, so its `.serialized` holds): it restarts
/// a cluster of its own and waits out a lease.
extension FaultTests {
    @Test("three hosts as network namespaces: pools run on their hosts, a pool limit holds across hosts, and a host cut off mid-run is fenced: its runs are rescued elsewhere, its late report refused, its script stopped")
    func threeHosts() async throws {
        let tag = String(getpid() % 100_000)
        let hosts = (1...3).map { NamespaceHost(index: $0, tag: tag) }
        // What a killed earlier run left (its addresses would clash with ours), and ours.
        let listed = try runProgram("/usr/sbin/ip", ["netns", "list"], environment: [:], directory: "/").stdout
        for line in listed.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            if name.wholeMatch(of: /tk[0-9]+h[1-3]/) != nil { _ = try? NamespaceHost.ip(["netns", "delete", name]) }
        }
        let links = try runProgram("/usr/sbin/ip", ["-o", "link", "show"], environment: [:], directory: "/").stdout
        for match in links.matches(of: /: (tk[0-9]+o[1-3])@/) { _ = try? NamespaceHost.ip(["link", "delete", String(match.1)]) }
        hosts.forEach { $0.remove() }
        defer { hosts.forEach { $0.remove() } }
        try await offThePool { for host in hosts { try host.create() } }

        // What each host's scripts did, in one file all of them append to: "<host> <event> <job> <run> <attempt>".
        let journal = NSTemporaryDirectory() + "tock-hosts-journal-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(journal) }
        let record = { (host: String, event: String) in
            #"echo "\#(host) \#(event) $TOCK_JOB $TOCK_RUN_ID $TOCK_ATTEMPT" >> \#(journal)"#
        }
        // Each host has its own scripts directory, whose scripts say which host they are on.
        let directories = try hosts.map { host in
            try makeScriptsDirectory([
                "scripts/where.sh": "#!/bin/sh\n\(record(host.name, "ran"))\n",
                "scripts/busy.sh": "#!/bin/sh\n\(record(host.name, "ran"))\nsleep 0.3\n",
                "scripts/short.sh": "#!/bin/sh\n\(record(host.name, "started"))\nsleep 8\n\(record(host.name, "ended"))\n",
                "scripts/long.sh": """
                    #!/bin/sh
                    trap '\(record(host.name, "stopped").replacingOccurrences(of: "'", with: "'\\''")); exit 143' TERM
                    \(record(host.name, "started"))
                    sleep 300 &
                    wait

                    """,
            ])
        }
        defer { directories.forEach { try? FileManager.default.removeItem(atPath: $0) } }
        let journalLines: @Sendable () -> [[String]] = {
            ((try? String(contentsOfFile: journal, encoding: .utf8)) ?? "").split(separator: "\n")
                .map { $0.split(separator: " ").map(String.init) }.filter { $0.count == 5 }
        }

        // A cluster of its own, listening on TCP at each host's side of its link (and, as always, on its socket).
        var own = try await OwnCluster("hosts", migratingFrom: directories[0])
        defer { own.remove() }
        let home = own.home
        let password = "fleet-worker-password-0123456789"
        try await TestDatabase.withClient(own.owner) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: """
                CREATE ROLE fleet_worker LOGIN PASSWORD '\(password)' IN ROLE tock_worker
                """)).collect()
            let addresses = hosts.map(\.serverAddress).joined(separator: ",")
            _ = try await client.query(PostgresQuery(unsafeSQL: "ALTER SYSTEM SET listen_addresses = '\(addresses)'")).collect()
        }
        let hba = try String(contentsOfFile: own.hbaFile, encoding: .utf8)
        try (hba + "\nhost tock fleet_worker 10.213.0.0/16 scram-sha-256\n").write(toFile: own.hbaFile, atomically: false, encoding: .utf8)
        try await own.restart()
        let settings = own.owner
        let over: @Sendable (NamespaceHost) -> ConnectionSettings = { host in
            ConnectionSettings(endpoint: .tcp(host: host.serverAddress, port: 5432), username: "fleet_worker",
                               password: password, database: "tock")
        }
        // A grace far longer than the test waits for the cut-off host's script to stop: it must not wait it out.
        @Sendable func worker(_ host: NamespaceHost, name: String, pools: String) throws -> TockProcess {
            try TockProcess(["worker", "--name", name, "--pools", pools, "--concurrency", "4", "--shutdown-grace-seconds", "120",
                             "--scripts-dir", directories[host.index - 1] + "/scripts"],
                            settings: over(host), directory: directories[host.index - 1],
                            launcher: ["/usr/sbin/ip", "netns", "exec", host.namespace])
        }

        try await TestDatabase.withClient(settings) { client in
            let database = Database(client: client, logger: TestDatabase.logger, settings: settings)
            let scheduler = try TockProcess(["scheduler"], settings: settings, directory: home)
            var workers = [
                "h1": try worker(hosts[0], name: "h1", pools: "etl"),
                "h2": try worker(hosts[1], name: "h2", pools: "etl"),
                "h3": try worker(hosts[2], name: "h3", pools: "reports"),
            ]
            defer {
                scheduler.signal(SIGKILL)
                workers.values.forEach { $0.signal(SIGKILL) }
            }
            let logs = { workers.map { "\($0.key): \($0.value.log.suffix(2500))" }.sorted().joined(separator: "\n---\n") }
            let started = try await eventually(timeout: .seconds(60), interval: .milliseconds(100)) {
                Set(try await database.workers().filter(\.alive).map(\.name)) == ["h1", "h2", "h3"]
            }
            try #require(started, "\(logs())")
            for (name, script, pool, attempts) in [("where-etl", "where.sh", "etl", 1), ("where-reports", "where.sh", "reports", 1),
                                                   ("busy", "busy.sh", "etl", 1), ("short", "short.sh", "etl", 2),
                                                   ("long", "long.sh", "etl", 2)] {
                _ = try await client.query("""
                    SELECT tock.create_job_json(jsonb_build_object('name', \(name)::text, 'script', \(script)::text,
                        'pool', \(pool)::text, 'overlap', 'allow', 'max_attempts', \(attempts)::int))
                    """).collect()
            }
            let succeeded = { (job: String) in
                try await client.query("""
                    SELECT count(*)::int FROM tock.run_history WHERE job_name = \(job) AND status = 'succeeded'
                    """).decode(Int.self).all().first ?? 0
            }

            // A pool's runs run only on its hosts, from their scripts directories.
            _ = try await client.query("SELECT tock.run_now('where-etl') FROM generate_series(1, 8)").collect()
            _ = try await client.query("SELECT tock.run_now('where-reports') FROM generate_series(1, 8)").collect()
            #expect(try await eventually(timeout: .seconds(60)) {
                let (etl, reports) = (try await succeeded("where-etl"), try await succeeded("where-reports"))
                return etl == 8 && reports == 8
            }, "\(logs())")
            let ranWhere = { (job: String) in Set(journalLines().filter { $0[2] == job }.map { $0[0] }) }
            #expect(ranWhere("where-etl").isSubset(of: ["h1", "h2"]) && !ranWhere("where-etl").isEmpty, "\(ranWhere("where-etl"))")
            #expect(ranWhere("where-reports") == ["h3"], "\(ranWhere("where-reports"))")
            let byWorker = try await client.query("""
                SELECT job_name || ' ' || string_agg(DISTINCT worker_name, ',' ORDER BY worker_name) FROM tock.run_history
                WHERE job_name LIKE 'where-%' GROUP BY job_name ORDER BY job_name
                """).decode(String.self).all()
            #expect(byWorker.count == 2 && ["h1", "h1,h2", "h2"].map { "where-etl " + $0 }.contains(byWorker[0])
                    && byWorker[1] == "where-reports h3", "\(byWorker)")

            // A pool limit of 2 across the two etl hosts, each with 4 free slots: sampled as fast as the database
            // answers, never more than 2 running.
            _ = try await client.query(#"SELECT tock.set_pool('etl', '{"max_running": 2}')"#).collect()
            _ = try await client.query("SELECT tock.run_now('busy') FROM generate_series(1, 16)").collect()
            var highest = 0, samples = 0
            let deadline = ContinuousClock.now + .seconds(90)
            while try await succeeded("busy") < 16, ContinuousClock.now < deadline {
                let running = try await client.query(
                    "SELECT count(*)::int FROM tock.runs WHERE pool = 'etl' AND status = 'running'").decode(Int.self).all().first ?? 0
                highest = max(highest, running)
                samples += 1
            }
            let busyHosts = Dictionary(grouping: journalLines().filter { $0[2] == "busy" }, by: { $0[0] }).mapValues(\.count)
            print("fault 13: pool limit 2 across hosts h1 and h2: at most \(highest) running in \(samples) samples; runs per host \(busyHosts)")
            #expect(try await succeeded("busy") == 16, "\(logs())")
            #expect(highest == 2, "at most \(highest) running in \(samples) samples")
            _ = try await client.query(#"SELECT tock.set_pool('etl', '{"max_running": null}')"#).collect()

            // Fencing. h2 stops, so h1 takes both runs; then h1's cable is pulled and a new worker of the pool
            // starts on h2. A run that ends on h1 while it is cut off, and one still running when the cable is
            // back, are both rescued on h2 once h1's lease runs out (30 s without a heartbeat).
            workers["h2"]?.signal(SIGTERM)
            #expect(try await workers["h2"]?.wait(timeout: .seconds(60)) == 0, "\(logs())")
            let short = try await client.query("SELECT tock.run_now('short')").decode(Int64.self).all()[0]
            let long = try await client.query("SELECT tock.run_now('long')").decode(Int64.self).all()[0]
            let onH1 = try await eventually(timeout: .seconds(30)) {
                try await client.query("""
                    SELECT count(*)::int FROM tock.run_history WHERE id IN (\(short), \(long)) AND status = 'running'
                       AND worker_name = 'h1'
                    """).decode(Int.self).all().first == 2
                    && journalLines().filter { $0[0] == "h1" && $0[1] == "started" }.count == 2
            }
            try #require(onH1, "\(logs())")
            try await offThePool { try hosts[0].cut() }
            let cutAt = ContinuousClock.now
            workers["h2b"] = try worker(hosts[1], name: "h2b", pools: "etl")
            let rescued = try await eventually(timeout: .seconds(90), interval: .milliseconds(100)) {
                let shortDone = try await succeeded("short") == 1
                let longMoved = try await client.query("""
                    SELECT count(*)::int FROM tock.run_history WHERE job_name = 'long' AND attempt = 2 AND status = 'running'
                       AND worker_name = 'h2b'
                    """).decode(Int.self).all().first == 1
                return shortDone && longMoved
            }
            let rescueTook = ContinuousClock.now - cutAt
            let attempts = try await client.query("""
                SELECT job_name || ' ' || attempt || ' ' || status || ' ' || coalesce(worker_name, '-') || ' ' || coalesce(error, '-')
                FROM tock.run_history WHERE job_name IN ('short', 'long') ORDER BY job_name, attempt
                """).decode(String.self).all()
            try #require(rescued, "after \(rescueTook): \(attempts)\n\(logs())")
            #expect(journalLines().contains { $0 == ["h1", "ended", "short", "\(short)", "1"] },
                    "the first attempt of short ends on h1 while it is cut off: \(journalLines())")
            // The lease (30 s without a heartbeat), the rescue's next pass, and h2b's start and 8 s run.
            #expect(rescueTook < .seconds(60), "rescued after \(rescueTook)")

            // The cable back: h1 learns it lost its lease. Its report of short's first attempt changes nothing, and
            // long's script there is stopped (and its stop, a report too, refused).
            try await offThePool { try hosts[0].restore() }
            let restoredAt = ContinuousClock.now
            let h1 = try #require(workers["h1"])
            let stopped = try await eventually(timeout: .seconds(150), interval: .milliseconds(100)) {
                journalLines().contains { $0 == ["h1", "stopped", "long", "\(long)", "1"] }
            }
            let stopTook = ContinuousClock.now - restoredAt
            // Its heartbeat's next answer, over a link that was down for 30 s (TCP's retransmission backoff), not the
            // 120 s grace.
            #expect(stopped && stopTook < .seconds(40), "h1's script stopped \(stopTook) after the link came back")
            let fenced = try await eventually(timeout: .seconds(30), interval: .milliseconds(200)) { !h1.isRunning }
            let h1Log = h1.log
            #expect(fenced, "h1 still running: \(h1.isRunning); journal \(journalLines())\n\(String(h1Log.suffix(5000)))")
            #expect(h1Log.contains("no longer registered as alive"), "\(String(h1Log.suffix(5000)))")
            let refusals = h1Log.components(separatedBy: "refused this run's report").count - 1
            #expect(refusals == 2, "h1 logged \(refusals) refused reports: \(String(h1Log.suffix(5000)))")
            let after = try await client.query("""
                SELECT job_name || ' ' || attempt || ' ' || status || ' ' || coalesce(worker_name, '-') || ' ' || coalesce(error, '-')
                FROM tock.run_history WHERE job_name IN ('short', 'long') ORDER BY job_name, attempt
                """).decode(String.self).all()
            #expect(after == [
                "long 1 failed h1 worker h1 was lost (stopped heartbeating)",
                "long 2 running h2b -",
                "short 1 failed h1 worker h1 was lost (stopped heartbeating)",
                "short 2 succeeded h2b -",
            ], "\(after)")
            #expect(!workers.values.contains { $0.log.contains(password) }, "a log holds the role's password")
            print("fault 13: h1 cut off mid-run: its 2 runs rescued on h2b \(rescueTook) after the cut; back online, h1 stopped its script \(stopTook) later (grace 120 s), its 2 late reports were refused, and it exited")
            _ = try await client.query("SELECT tock.cancel(id) FROM tock.runs WHERE status = 'running'").collect()
        }
    }
}
