import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// The delivery service end to end: `tock notifier` processes against a real receiver on loopback that verifies
/// each POST with the Standard Webhooks reference library (Tests/Webhooks/receiver.py, Python's standardwebhooks).
@Suite("webhooks: tock notifier sends signed deliveries to a real receiver, retries, and loses none")
struct WebhookTests {
    /// The receiver, as a process, and what it recorded.
    final class Receiver: @unchecked Sendable {
        let port: Int
        let log: String
        let process: Process

        init(port: Int, secret: String, mode: String, log: String) throws {
            let python = ProcessInfo.processInfo.environment["TOCK_TEST_PYTHON"] ?? TestDatabase.packageRoot + "/.tock/venv-test/bin/python"
            (self.port, self.log) = (port, log)
            process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [TestDatabase.packageRoot + "/Tests/Webhooks/receiver.py", "\(port)", secret, log, mode]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
        }

        /// Waits until it accepts connections (a Python start can take seconds on a loaded machine): a delivery sent
        /// before would be refused, and counted as an attempt the receiver never saw.
        func listening() async throws -> Self {
            let port = port
            let up = try await eventually(timeout: .seconds(30), interval: .milliseconds(50)) { TestPorts.accepts(port) }
            try #require(up, "the receiver on port \(port) never listened")
            return self
        }

        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        /// Each request it got, in order.
        var requests: [[String: Any]] {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }

        deinit { stop() }
    }

    /// A run of `job` that fails, as a worker reports it.
    static func failRun(_ database: Database, _ job: String, worker: Int64) async throws -> Int64 {
        let run = try await database.runNow(job)
        _ = try await database.claimRuns(worker: worker, max: 10)
        _ = try await database.finishRuns(worker: worker, [(run, RunOutcome(status: .failed, exitCode: 2, output: "it broke\n"))])
        return run
    }

    static func setUp(_ database: Database) async throws -> Int64 {
        var job = JobDefinition(name: "report", script: "x.sh")
        job.overlap = "allow"
        _ = try await database.createJob(job)
        return try await database.registerWorker(host: "t", pid: 1, concurrency: 10, scriptsDirectory: nil, version: nil)
    }

    static func logPath(_ name: String) -> String {
        NSTemporaryDirectory() + "tock-webhook-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).jsonl"
    }

    @Test("a delivery verifies with the reference library (and a changed body or secret does not); a receiver down 20 s then up gets it, once, with the same webhook-id")
    func signedAndRetried() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = Self.logPath("signed")
        defer { unlink(log) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try await Self.setUp(database)
            let port = try TestPorts.free()
            let hook = try await database.addHook(fields: ["job": "report", "event": "failed", "url": "http://127.0.0.1:\(port)/hooks/tock"])
            _ = try await database.client.query("SELECT tock.set_config('portal_url', 'https://tock.example.com')").collect()
            let notifier = try TockProcess(["notifier", "--webhook-allow", "127.0.0.1"], settings: settings, directory: directory)
            defer { notifier.signal(SIGKILL) }
            var receiver = try await Receiver(port: port, secret: try #require(hook.secret), mode: "ok", log: log).listening()

            let first = try await Self.failRun(database, "report", worker: worker)
            let delivered = try await eventually(timeout: .seconds(30), interval: .milliseconds(50)) {
                try await database.deliveries(job: "report").first?.status == "delivered"
            }
            let deliveries = try await database.deliveries(job: "report")
            #expect(delivered, "\(deliveries)\n\(notifier.log)")
            let request = try #require(receiver.requests.first)
            #expect(request["verified"] as? Bool == true && request["tampered_accepted"] as? Bool == false, "\(request)")
            #expect(request["content_type"] as? String == "application/json")
            let body = try #require(request["body"] as? [String: Any])
            let data = try #require(body["data"] as? [String: Any])
            #expect(body["type"] as? String == "run.failed" && data["run_id"] as? Int == Int(first) && data["exit_code"] as? Int == 2)
            #expect(data["url"] as? String == "https://tock.example.com/#/runs/\(first)" && data["output_tail"] as? String == "it broke\n")
            #expect((body["text"] as? String ?? "").contains("https://tock.example.com/#/runs/\(first)"), "\(body)")
            #expect(!notifier.log.contains("/hooks/tock") && !notifier.log.contains(hook.secret ?? "whsec_"), "the log shows the origin alone")

            // The receiver goes away for 20 s: the delivery is tried again with backoff, and arrives once it is back.
            receiver.stop()
            let second = try await Self.failRun(database, "report", worker: worker)
            let refused = try await eventually(timeout: .seconds(20), interval: .milliseconds(100)) {
                (try await database.deliveries(job: "report").first { $0.runId == second }?.attempts ?? 0) >= 2
            }
            let waiting = try await database.deliveries(job: "report")
            #expect(refused, "\(waiting)")
            try await Task.sleep(for: .seconds(20))
            receiver = try await Receiver(port: port, secret: try #require(hook.secret), mode: "ok", log: log).listening()
            let arrived = try await eventually(timeout: .seconds(90), interval: .milliseconds(200)) {
                try await database.deliveries(job: "report").first { $0.runId == second }?.status == "delivered"
            }
            let after = try await database.deliveries(job: "report").first { $0.runId == second }
            #expect(arrived, "\(String(describing: after))\n\(notifier.log.suffix(3000))")
            let forSecond = receiver.requests.filter { (($0["body"] as? [String: Any])?["data"] as? [String: Any])?["run_id"] as? Int == Int(second) }
            #expect(forSecond.count == 1 && forSecond[0]["id"] as? String == after?.messageId && forSecond[0]["verified"] as? Bool == true)
            let attempts = try await database.client.query("""
                SELECT count(*)::int FROM tock.delivery_attempts WHERE delivery_id = \(after?.id ?? 0) AND error IS NOT NULL
                """).decode(Int.self).all().first ?? 0
            print("webhooks: receiver down 20 s: delivered after \(after?.attempts ?? 0) attempts (\(attempts) refused)")
            #expect(attempts >= 3)
        }
    }

    @Test("a receiver that always answers 500 leaves a failed delivery with each attempt; a host outside --webhook-allow is never called")
    func failuresAndAllowList() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = Self.logPath("failing")
        defer { unlink(log) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try await Self.setUp(database)
            let port = try TestPorts.free()
            let hook = try await database.addHook(fields: ["job": "report", "event": "failed", "url": "http://127.0.0.1:\(port)/x",
                                                         "max_attempts": 3])
            let receiver = try await Receiver(port: port, secret: try #require(hook.secret), mode: "fail", log: log).listening()
            defer { receiver.stop() }
            let notifier = try TockProcess(["notifier", "--webhook-allow", "127.0.0.1"], settings: settings, directory: directory)
            defer { notifier.signal(SIGKILL) }
            let run = try await Self.failRun(database, "report", worker: worker)
            let failed = try await eventually(timeout: .seconds(60), interval: .milliseconds(100)) {
                try await database.deliveries(job: "report").first?.status == "failed"
            }
            let delivery = try #require(try await database.deliveries(job: "report").first)
            #expect(failed && delivery.attempts == 3 && delivery.lastCode == 500 && delivery.runId == run, "\(delivery)")
            #expect(receiver.requests.count == 3 && Set(receiver.requests.compactMap { $0["id"] as? String }) == [delivery.messageId])

            // Retried by hand: three more attempts.
            _ = try await database.retryDelivery(delivery.id)
            let failedAgain = try await eventually(timeout: .seconds(60), interval: .milliseconds(100)) {
                let again = try await database.delivery(delivery.id)
                return again.status == "failed" && again.attempts == 6
            }
            #expect(failedAgain)

            // Another service, allowed only hooks.example.com, refuses loopback at once: no request, one attempt.
            notifier.signal(SIGKILL)
            let strict = try TockProcess(["notifier", "--webhook-allow", "hooks.example.com"], settings: settings, directory: directory)
            defer { strict.signal(SIGKILL) }
            let before = receiver.requests.count
            let blockedRun = try await Self.failRun(database, "report", worker: worker)
            let blocked = try await eventually(timeout: .seconds(30), interval: .milliseconds(100)) {
                try await database.deliveries(job: "report").first { $0.runId == blockedRun }?.status == "failed"
            }
            let refusal = try await database.deliveries(job: "report").first { $0.runId == blockedRun }
            #expect(blocked && refusal?.attempts == 1 && (refusal?.lastError ?? "").contains("--webhook-allow"), "\(String(describing: refusal))")
            #expect(receiver.requests.count == before)
        }
    }

    @Test("kill -9 of the delivery service mid-send loses nothing: another sends it again, with the same webhook-id")
    func killedMidSend() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = Self.logPath("killed")
        defer { unlink(log) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try await Self.setUp(database)
            let port = try TestPorts.free()
            let hook = try await database.addHook(fields: ["job": "report", "event": "failed", "url": "http://127.0.0.1:\(port)/x"])
            let receiver = try await Receiver(port: port, secret: try #require(hook.secret), mode: "slow", log: log).listening()
            defer { receiver.stop() }
            let arguments = ["notifier", "--webhook-allow", "127.0.0.1", "--webhook-timeout-seconds", "5"]
            let first = try TockProcess(arguments, settings: settings, directory: directory)
            defer { first.signal(SIGKILL) }
            _ = try await Self.failRun(database, "report", worker: worker)
            // Killed while the receiver holds its request (it answers after 3 s).
            let arrived = try await eventually(timeout: .seconds(30), interval: .milliseconds(20)) {
                !((try? String(contentsOfFile: log + ".arrived", encoding: .utf8)) ?? "").isEmpty
            }
            defer { unlink(log + ".arrived") }
            try #require(arrived, "\(first.log)")
            first.signal(SIGKILL)
            let second = try TockProcess(arguments, settings: settings, directory: directory)
            defer { second.signal(SIGKILL) }
            // Held for 15 s (three times the timeout, at least 15 s), then sent again.
            let delivered = try await eventually(timeout: .seconds(60), interval: .milliseconds(200)) {
                try await database.deliveries(job: "report").first?.status == "delivered"
            }
            let delivery = try #require(try await database.deliveries(job: "report").first)
            #expect(delivered && delivery.attempts == 2, "\(delivery)\n\(second.log)")
            let ids = receiver.requests.compactMap { $0["id"] as? String }
            #expect(ids.count == 2 && Set(ids) == [delivery.messageId], "\(ids)")
            print("webhooks: kill -9 mid-send: delivered by the next service, \(ids.count) requests with one webhook-id")
        }
    }

    @Test("tock hook and tock deliveries: add prints the secret once, list shows the origin alone, bad input exits 2 with the field")
    func commandLine() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let worker = try await Self.setUp(database)
            let added = try await runTock(["hook", "add", "report", "--on", "failed", "--webhook", "https://hooks.example.com/T0/secret-path"],
                                          settings: settings, directory: directory)
            #expect(added.status == 0 && added.stdout.contains("whsec_"), "\(added)")
            let listed = try await runTock(["hook", "list", "report"], settings: settings, directory: directory)
            #expect(listed.status == 0 && listed.stdout.contains("https://hooks.example.com")
                    && !listed.stdout.contains("secret-path") && !listed.stdout.contains("whsec_"), "\(listed)")
            for (arguments, field) in [(["--on", "exploded", "--webhook", "https://h.example.com"], "event"),
                                       (["--on", "failed", "--webhook", "file:///etc/passwd"], "url"),
                                       (["--on", "late", "--webhook", "https://h.example.com"], "late_after")] {
                let bad = try await runTock(["hook", "add", "report"] + arguments, settings: settings, directory: directory)
                #expect(bad.status == 2 && bad.stderr.contains(field), "\(arguments): \(bad)")
            }
            _ = try await Self.failRun(database, "report", worker: worker)
            let deliveries = try await runTock(["deliveries", "--status", "pending"], settings: settings, directory: directory)
            #expect(deliveries.status == 0 && deliveries.stdout.contains("report") && deliveries.stdout.contains("pending"), "\(deliveries)")
            let json = try await runTock(["deliveries", "--json"], settings: settings, directory: directory)
            let parsed = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
            #expect(parsed?.count == 1 && parsed?.first?["event"] as? String == "failed", "\(json)")
            let hook = try await database.hooks().first?.id ?? 0
            let removed = try await runTock(["hook", "remove", "\(hook)"], settings: settings, directory: directory)
            let left = try await database.hooks()
            #expect(removed.status == 0 && left.isEmpty, "\(removed)")
        }
    }
}
