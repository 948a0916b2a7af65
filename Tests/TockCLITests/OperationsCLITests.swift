import Foundation
import Testing
import TockCore
import TockTesting

/// GETs a URL with curl (the server is another process, reached over real TCP).
func httpGet(_ url: String) async throws -> String {
    let result = try await runProgramOffPool("/usr/bin/curl", ["-sf", "--max-time", "5", url], environment: ["PATH": "/usr/bin:/bin"],
                                directory: "/")
    guard result.status == 0 else { throw TockError(.unavailable, "curl \(url) exited \(result.status)") }
    return result.stdout
}


@Suite("operations from the command line: metrics, JSON logs, doctor, queue, stuck runs")
struct OperationsCLITests {
    @Test("worker, scheduler and API each serve Prometheus metrics; the worker logs one JSON object per event")
    func metricsAndJSONLogs() async throws {
        let directory = try makeScriptsDirectory(["scripts/hello.sh": "#!/bin/sh\necho hello\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        let (workerPort, schedulerPort, apiPort) = (try TestPorts.free(), try TestPorts.free(), try TestPorts.free())
        let worker = try TockProcess(["worker", "--metrics-port", "\(workerPort)", "--log-format", "json"],
                                     settings: settings, directory: directory)
        let scheduler = try TockProcess(["scheduler", "--metrics-port", "\(schedulerPort)"], settings: settings, directory: directory)
        let api = try TockProcess(["api", "--api-port", "\(apiPort)"], settings: settings, directory: directory)
        defer { [worker, scheduler, api].forEach { $0.signal(SIGKILL) } }

        #expect(try await tock(["job", "add", "hello", "--script", "hello.sh", "--schedule", "every 1 second"],
                         settings: settings, directory: directory).status == 0)
        let waited = try await tock(["job", "run", "hello", "--wait", "--wait-timeout", "30"], settings: settings, directory: directory)
        #expect(waited.status == 0, "\(waited.stderr)\n\(worker.log)")

        #expect(try await eventually(timeout: .seconds(60)) {
            (try? await httpGet("http://127.0.0.1:\(workerPort)/metrics"))?.contains("tock_runs_finished_total{job=\"hello\",status=\"succeeded\"}") == true
        }, "\(worker.log)")
        let workerMetrics = try await httpGet("http://127.0.0.1:\(workerPort)/metrics")
        #expect(workerMetrics.contains("# TYPE tock_run_duration_seconds histogram"))
        #expect(workerMetrics.contains("tock_runs_started_total{job=\"hello\"}"))
        // Scheduled runs (every second) report how late they started. On failure the logs say which side stalled.
        #expect(try await eventually(timeout: .seconds(60)) {
            (try? await httpGet("http://127.0.0.1:\(workerPort)/metrics"))?.contains("tock_schedule_lateness_seconds_count") == true
        }, "worker:\n\(worker.log)\nscheduler:\n\(scheduler.log)")
        #expect(try await eventually(timeout: .seconds(60)) {
            (try? await httpGet("http://127.0.0.1:\(schedulerPort)/metrics"))?.contains("tock_scheduler_ticks_total") == true
        }, "\(scheduler.log)")
        let apiMetrics = try await httpGet("http://127.0.0.1:\(apiPort)/metrics")
        #expect(apiMetrics.contains("tock_workers_alive 1.0") || apiMetrics.contains("tock_workers_alive 1\n"), "\(apiMetrics)")
        #expect(apiMetrics.contains("tock_schedulers_alive 1"), "\(apiMetrics)")
        #expect(apiMetrics.contains("# HELP tock_queue_runs"))

        // One JSON object per line, with the run, job and worker at the top level.
        let lines = worker.log.split(separator: "\n")
        #expect(!lines.isEmpty)
        let events = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(events.count == lines.count, "every line is JSON: \(worker.log)")
        let finished = try #require(events.first { $0["message"] as? String == "run finished" })
        #expect(finished["job"] as? String == "hello")
        #expect(finished["run"] != nil && finished["worker"] != nil && finished["status"] as? String == "succeeded")
        #expect(finished["level"] as? String == "info" && finished["time"] != nil)
        // "run started" is logged once the script's process exists, and names it.
        let started = try #require(events.first { $0["message"] as? String == "run started" })
        #expect((started["pid"] as? String).flatMap { Int32($0) }.map { $0 > 0 } == true, "\(started)")

        let doctor = try await tock(["doctor"], settings: settings, directory: directory)
        #expect(doctor.status == 0, "\(doctor.stdout)\(doctor.stderr)")
        for check in ["connection", "migrations", "roles", "clocks", "notify", "workers", "schedulers"] {
            #expect(doctor.stdout.contains("ok    \(check)"), "\(check): \(doctor.stdout)")
        }
    }

    @Test("text logs: one line per event, with the worker's, run's and job's metadata sorted inline")
    func textLogs() async throws {
        let directory = try makeScriptsDirectory(["scripts/hello.sh": "#!/bin/sh\necho hello\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        let worker = try TockProcess(["worker"], settings: settings, directory: directory)
        defer { worker.signal(SIGKILL) }
        #expect(try await tock(["job", "add", "hello", "--script", "hello.sh"], settings: settings, directory: directory).status == 0)
        let waited = try await tock(["job", "run", "hello", "--wait", "--wait-timeout", "30"], settings: settings, directory: directory)
        #expect(waited.status == 0, "\(waited.stderr)\n\(worker.log)")
        // The run's and job's metadata are set on the logger per run; each line carries them, and the next run's
        // lines carry its own (the handler keeps the metadata and hands it over with each event).
        let second = try await tock(["job", "run", "hello", "--wait", "--wait-timeout", "30"], settings: settings, directory: directory)
        #expect(second.status == 0)
        #expect(try await eventually(timeout: .seconds(60)) { worker.log.components(separatedBy: "run finished").count == 3 })
        let finished = worker.log.split(separator: "\n").filter { $0.hasSuffix("[TockRuntime] run finished") }
        #expect(finished.count == 2, "\(worker.log)")
        let line = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} info tock: exit_code=0 job=hello run=(\d+) status=succeeded worker=\d+ \[TockRuntime\] run finished$/
        let runs = finished.compactMap { try? line.wholeMatch(in: String($0))?.1 }.map(String.init)
        #expect(runs.count == 2 && Set(runs).count == 2, "\(finished)")
    }

    @Test("doctor fails with a fix for pending migrations; queue and runs --stuck read the views")
    func doctorQueueStuck() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let empty = try await TestDatabase.createEmpty()
        let doctor = try await tock(["doctor"], settings: empty, directory: directory)
        #expect(doctor.status == 1)
        #expect(doctor.stdout.contains("FAIL  migrations"), "\(doctor.stdout)")
        #expect(doctor.stdout.contains("tock migrate"))

        let settings = try await TestDatabase.create()
        #expect(try await tock(["job", "add", "slow", "--script", "slow.sh", "--priority", "80"], settings: settings, directory: directory).status == 0)
        for _ in 0..<2 { #expect(try await tock(["job", "run", "slow"], settings: settings, directory: directory).status == 0) }
        let queue = try await tock(["queue"], settings: settings, directory: directory)
        #expect(queue.status == 0)
        #expect(queue.stdout.contains("PRIORITY"), "\(queue.stdout)")
        #expect(queue.stdout.contains("2 pending (2 ready, 0 delayed), 0 running"), "\(queue.stdout)")
        let stuck = try await tock(["runs", "--stuck"], settings: settings, directory: directory)
        #expect(stuck.status == 0 && stuck.stdout.contains("no stuck runs"), "\(stuck.stdout)\(stuck.stderr)")
        let reset = try await tock(["job", "reset", "slow", "--json"], settings: settings, directory: directory)
        #expect(reset.status == 0, "\(reset.stderr)")
        #expect(reset.stdout.contains("\"runs_ended\""), "\(reset.stdout)")
        let badFormat = try await tock(["queue", "--log-format", "xml"], settings: settings, directory: directory)
        #expect(badFormat.status != 0 && badFormat.stderr.contains("not text or json"), "\(badFormat.stderr)")
    }
}
