import Foundation
import PostgresNIO
import Testing
import TockCore
import TockTesting

/// Runs `tock-bench` with `arguments` against `settings`, from `directory`. PATH is the tests' own: the latency
/// scenario builds its script with the C compiler it finds there (the Swift toolchain's clang, or cc).
func tockBench(_ arguments: [String], settings: ConnectionSettings, directory: String) async throws -> Invocation {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    let result = try await runProgramOffPool(TockProcess.benchBinary, arguments,
                                environment: ["DATABASE_URL": settings.url(), "PATH": path, "TZ": "UTC"], directory: directory)
    return Invocation(status: result.status, stdout: result.stdout, stderr: result.stderr)
}

/// `tock-bench` at toy sizes: every scenario runs its real processes to the end and reports figures that hang
/// together. Timings are not checked here (other tests share the cores); the benchmark itself checks targets.
/// One test at a time: each checks that no benchmark database is left on the server, which another's would be.
@Suite("tock-bench, every scenario at small sizes; tock without it", .serialized)
struct BenchCLITests {
    @Test("each scenario runs real workers to completion, reports consistent counts as JSON, and drops its database")
    func everyScenario() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()

        let bench = try await tockBench(["--json", "--samples", "5", "--runs", "40", "--queue-runs", "300", "--workers", "1,2",
                              "--schedule-jobs", "20", "--schedule-concurrency", "10", "--idle-seconds", "5",
                              "--scale-jobs", "1000", "--scale-runs", "3000", "--scale-repeats", "1",
                              "--scale-backlog", "2000"],
                                  settings: settings, directory: directory)
        try #require(bench.status == 0, "\(bench.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any])

        let latency = try #require(report["latency"] as? [String: [String: Double]])
        for key in ["to_script_running", "to_claimed", "to_script_running_over_http"] {
            let distribution = try #require(latency[key], "latency.\(key)")
            #expect(distribution["count"] == 5)
            // A run is claimed before its script runs, and a time is positive and ordered.
            #expect((distribution["min_ms"] ?? 0) > 0 && distribution["min_ms"]! <= distribution["p50_ms"]!
                    && distribution["p50_ms"]! <= distribution["max_ms"]!, "\(key): \(distribution)")
        }
        #expect(latency["to_claimed"]!["p50_ms"]! < latency["to_script_running"]!["p50_ms"]!)

        for (name, runs) in [("queue", 300.0)] {
            let rates = try #require(report[name] as? [[String: Double]])
            #expect(rates.map { $0["workers"] } == [1, 2])
            #expect(rates.allSatisfy { $0["runs"] == runs && ($0["runs_per_second"] ?? 0) > 0 }, "\(rates)")
        }
        let throughput = try #require(report["throughput"] as? [String: [[String: Double]]])
        for side in ["tock", "raw_spawn"] {
            #expect(throughput[side]?.map { $0["runs"] } == [40, 40], "\(side)")
        }

        let schedule = try #require(report["schedule"] as? [String: Double])
        #expect(schedule["count"] == 20, "every due job's run started: \(schedule)")

        let idle = try #require(report["idle"] as? [[String: Any]])
        #expect(idle.compactMap { $0["process"] as? String } == ["worker", "scheduler"])
        #expect(idle.allSatisfy { ($0["rss_megabytes"] as? Double ?? 0) > 0 && ($0["transactions"] as? Int ?? -1) >= 0 })

        let scale = try #require(report["scale"] as? [String: Any])
        #expect(scale["jobs"] as? Int == 1000 && scale["runs"] as? Int == 3000)
        let queries = try #require(scale["queries"] as? [[String: Any]])
        #expect(queries.count > 10 && queries.allSatisfy { $0["count"] as? Int == 1 })
        #expect(queries.contains { ($0["name"] as? String ?? "").hasPrefix("tock.tick()") })
        // The deep queue's claim took a full batch from the 1,000 ready runs of the 2,000 added.
        #expect(scale["backlog"] as? Int == 2000)
        let deepClaim = queries.first { ($0["name"] as? String ?? "") == "tock.claim_runs(worker, 100): 2000 pending" }
        #expect(deepClaim?["rows"] as? Int == 100, "\(queries.map { $0["name"] ?? "" })")

        // Its database is gone: nothing named tock_bench_ is left on the server.
        let left = try await TestDatabase.withClient(settings) { client in
            try await client.query("SELECT count(*)::int FROM pg_database WHERE datname LIKE 'tock\\_bench\\_%'",
                                   logger: TestDatabase.logger).decode(Int.self).all()[0]
        }
        #expect(left == 0)
    }

    @Test("a 3-minute soak loses and doubles no run, and its in-flight tables and processes stop growing")
    func soak() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        let out = directory + "/soak"
        // A modest load (other suites share the cores), and timings left out of the verdict for the same reason.
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let result = try await runProgramOffPool(
            TockProcess.benchBinary,
            ["soak", "--json", "--minutes", "3", "--interval-seconds", "10", "--jobs", "300", "--load", "100",
             "--checks", "loss,growth", "--out", out],
            environment: ["DATABASE_URL": settings.url(), "PATH": path, "TZ": "UTC"], directory: directory)
        try #require(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(report["passed"] as? Bool == true)

        let checks = try #require(report["checks"] as? [[String: Any]])
        func passed(_ kind: String) -> [String] {
            checks.filter { $0["kind"] as? String == kind && $0["passed"] as? Bool == true }.compactMap { $0["name"] as? String }
        }
        for check in checks where ["loss", "growth"].contains(check["kind"] as? String) {
            #expect(check["passed"] as? Bool == true, "\(check)")
        }
        #expect(Set(passed("loss")).isSuperset(of: ["no-op load ran once each", "every fire time ran once",
                                                     "every run-now ran its script once", "history: one run per fire time",
                                                     "history: every run-now stored once, succeeded"]))
        // The queue's table and its claim index are judged; the jobs table is not (it is not in flight).
        #expect(passed("growth").contains("tock.runs stops growing"), "\(passed("growth"))")
        #expect(passed("growth").contains { $0.hasPrefix("tock.runs_claim_idx") })
        #expect(!checks.contains { ($0["name"] as? String ?? "").hasPrefix("tock.jobs ") })
        // Memory is measured for each of the 2 workers and 2 schedulers, and judged only by the soak itself.
        #expect(checks.filter { $0["kind"] as? String == "memory" }.count == 4)

        let intervals = try #require(report["intervals"] as? [[String: Any]])
        #expect(intervals.count == 18)
        #expect(intervals.allSatisfy { ($0["runs_per_second"] as? Double ?? 0) > 0 && ($0["run_nows"] as? Int ?? 0) > 0 })
        #expect(intervals.allSatisfy { ($0["processes"] as? [[String: Any]])?.allSatisfy { ($0["rss_megabytes"] as? Double ?? 0) > 0 } == true })
        let csv = try String(contentsOfFile: out + "/minutes.csv", encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 19 && csv.contains("bytes:tock.runs,"), "\(csv.prefix(300))")
        #expect(FileManager.default.fileExists(atPath: out + "/soak.json"))

        let left = try await TestDatabase.withClient(settings) { client in
            try await client.query("SELECT count(*)::int FROM pg_database WHERE datname LIKE 'tock\\_bench\\_%'",
                                   logger: TestDatabase.logger).decode(Int.self).all()[0]
        }
        #expect(left == 0)
    }

    @Test("an unknown scenario or a size out of range is refused before anything runs")
    func badOptions() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        for (arguments, fragment) in [(["nonsense"], "unknown scenario 'nonsense'"),
                                      (["--workers", "0"], "--workers"),
                                      (["run", "--idle-seconds", "1"], "--idle-seconds"),
                                      (["--scale-backlog", "150"], "--scale-backlog: 0, or at least 200 × --scale-repeats")] {
            let result = try await tockBench(arguments, settings: settings, directory: directory)
            #expect(result.status != 0 && result.stderr.contains(fragment), "\(arguments): \(result.stderr)")
        }
    }

    @Test("tock-bench worker finishes every run it claims at once as succeeded, and never starts its script")
    func noopWorker() async throws {
        // The job names a script that does not exist: `tock worker` fails such a run, this worker never opens it.
        let directory = try makeScriptsDirectory(["scripts/other.sh": "#!/bin/sh\necho other\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        let worker = try TockProcess(["worker", "--concurrency", "4"], settings: settings, directory: directory,
                                     environment: ["TOCK_LOG_LEVEL": "warning"], binary: TockProcess.benchBinary)
        defer { if worker.isRunning { worker.signal(SIGKILL) } }
        let add = try await tock(["job", "add", "phantom", "--script", "missing.sh"], settings: settings, directory: directory)
        #expect(add.status == 0, "\(add.stderr)")
        for _ in 0..<3 {
            #expect(try await tock(["job", "run", "phantom"], settings: settings, directory: directory).status == 0)
        }
        let finished = try await eventually(timeout: .seconds(60)) {
            let runs = try await tock(["runs", "--job", "phantom", "--json"], settings: settings, directory: directory)
            let decoded = try TockJSON.decoder().decode([RunInfo].self, from: Data(runs.stdout.utf8))
            return decoded.count == 3 && decoded.allSatisfy { $0.status == "succeeded" && $0.exitCode == 0 }
        }
        #expect(finished, "\(worker.log)")
        worker.signal(SIGTERM)
        #expect(try await worker.wait() == 0, "\(worker.log)")
    }

    @Test("the tock users install has no bench command and carries no benchmark code")
    func tockHasNoBench() async throws {
        let result = try await runProgramOffPool(tockBinary, ["bench", "queue"], environment: ["PATH": "/usr/bin:/bin"], directory: "/")
        #expect(result.status != 0, "\(result.stdout)")
        let help = try await runProgramOffPool(tockBinary, ["--help"], environment: ["PATH": "/usr/bin:/bin"], directory: "/")
        #expect(help.status == 0 && help.stdout.contains("worker") && !help.stdout.contains("bench"), "\(help.stdout)")
        // Names only the benchmark's code has: its session type, its database prefix, its script.
        let binary = try Data(contentsOf: URL(fileURLWithPath: tockBinary))
        for marker in ["BenchRun", "tock_bench_", "tock-clock"] {
            #expect(binary.range(of: Data(marker.utf8)) == nil, "\(tockBinary) contains '\(marker)'")
        }
        // …which the benchmarks' binary does have, so the check would see them.
        let bench = try Data(contentsOf: URL(fileURLWithPath: TockProcess.benchBinary))
        #expect(bench.range(of: Data("tock_bench_".utf8)) != nil)
    }
}
