import Foundation
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

/// HTTP jobs against a real server on loopback (Tests/HTTPJobs/server.py), sent by a real worker.
@Suite("HTTP jobs: the worker sends the request and records the answer", .serialized)
struct HTTPJobWorkerTests {
    final class Server: @unchecked Sendable {
        let port: Int
        let log: String
        let process = Process()

        init() throws {
            port = try TestPorts.free()
            log = FileManager.default.temporaryDirectory.appendingPathComponent("tock-http-\(UUID().uuidString)").path
            let python = ProcessInfo.processInfo.environment["TOCK_TEST_PYTHON"] ?? "/usr/bin/python3"
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [TestDatabase.packageRoot + "/Tests/HTTPJobs/server.py", "\(port)", log]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
        }

        /// Waits until it accepts connections (a Python start can take seconds on a loaded machine).
        func listening() async throws {
            let port = port
            let up = try await eventually(timeout: .seconds(30), interval: .milliseconds(50)) { TestPorts.accepts(port) }
            try #require(up, "the server on port \(port) never listened")
        }

        var requests: [[String: Any]] {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: log)
        }
    }

    func job(_ name: String, _ request: HTTPRequestSpec, timeout: Double? = nil, secrets: [String]? = nil) -> JobDefinition {
        var job = JobDefinition(name: name, script: "")
        job.script = nil
        job.http = request
        job.timeoutSeconds = timeout
        job.secrets = secrets
        return job
    }

    @Test("answers the job expects succeed with the status and the body's start as output; others fail; a slow one times out; redirects are not followed; secrets go into headers and are masked")
    func requestsAndAnswers() async throws {
        let server = try Server()
        try await server.listening()
        let base = "http://127.0.0.1:\(server.port)"
        let directory = try makeScriptsDirectory(["unused.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secretsFile = FileManager.default.temporaryDirectory.appendingPathComponent("tock-secrets-\(UUID().uuidString)").path
        let token = "tok-\(UUID().uuidString)"
        try "API_TOKEN:auth=\(token)\n".write(toFile: secretsFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secretsFile)
        defer { try? FileManager.default.removeItem(atPath: secretsFile) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(job("ping", HTTPRequestSpec(method: "POST", url: "\(base)/ok", headers: ["X-Run": "yes"],
                                                                       body: #"{"hello": 1}"#)))
            _ = try await database.createJob(job("down", HTTPRequestSpec(method: "GET", url: "\(base)/fail")))
            _ = try await database.createJob(job("down-ok", HTTPRequestSpec(method: "GET", url: "\(base)/fail", expect: "2xx,503")))
            _ = try await database.createJob(job("slow", HTTPRequestSpec(method: "GET", url: "\(base)/slow"), timeout: 1))
            _ = try await database.createJob(job("moved", HTTPRequestSpec(method: "GET", url: "\(base)/redirect")))
            _ = try await database.createJob(job("big", HTTPRequestSpec(method: "GET", url: "\(base)/big")))
            _ = try await database.createJob(job("nul", HTTPRequestSpec(method: "GET", url: "\(base)/nul")))
            _ = try await database.createJob(job("auth", HTTPRequestSpec(method: "GET", url: "\(base)/echo-auth",
                                                                       headers: ["Authorization": "Bearer {{secret.API_TOKEN}}"]),
                                               secrets: ["API_TOKEN"]))
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            configuration.httpAllow = try HostAllowList("127.0.0.1", field: "http-allow")
            configuration.secrets = try SecretsFile.load(secretsFile)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            var runs: [String: Int64] = [:]
            for name in ["ping", "down", "down-ok", "slow", "moved", "big", "auth", "nul"] { runs[name] = try await database.runNow(name) }
            try await withServices([worker]) { () async throws -> Void in
                let ended = try await eventually(timeout: .seconds(30)) {
                    try await database.runs().allSatisfy { RunStatus(rawValue: $0.status)?.isFinal == true }
                }
                let seen = try await database.runs().map { "\($0.jobName) \($0.status) \($0.error ?? "-")" }
                #expect(ended, "\(seen)")
            }
            func run(_ name: String) async throws -> RunInfo { try await database.run(try #require(runs[name])) }
            let ping = try await run("ping")
            #expect(ping.status == "succeeded" && ping.output?.hasPrefix("HTTP 200 OK in ") == true
                    && ping.output?.hasSuffix(" ms\npong {\"hello\": 1}") == true, "\(ping.output ?? "-")")
            let sent = try #require(server.requests.first { ($0["path"] as? String) == "/ok" })
            #expect(sent["method"] as? String == "POST" && sent["body"] as? String == #"{"hello": 1}"#)
            #expect((sent["headers"] as? [String: String])?["x-run"] == "yes")
            let down = try await run("down")
            #expect(down.status == "failed" && down.error == "HTTP 503 is not what the job expects (2xx)"
                    && down.output?.contains("down for maintenance") == true, "\(down.error ?? "-")")
            #expect(try await run("down-ok").status == "succeeded")
            let slow = try await run("slow")
            #expect(slow.status == "timed_out" && (slow.durationSeconds ?? 99) < 4, "\(slow.status) \(slow.durationSeconds ?? -1)")
            // A redirect is an answer like any other: 302 is not 2xx, and /ok was never asked for by it.
            let moved = try await run("moved")
            #expect(moved.status == "failed" && moved.error?.contains("HTTP 302") == true, "\(moved.error ?? "-")")
            #expect(server.requests.filter { ($0["path"] as? String) == "/ok" }.count == 1)
            let big = try await run("big")
            #expect(big.status == "succeeded" && (big.output?.utf8.count ?? 0) < 66 * 1024
                    && big.output?.contains("more bytes of the answer not kept") == true)
            // A zero byte in the answer, which PostgreSQL's text refuses, does not stop the run's finish.
            let nul = try await run("nul")
            #expect(nul.status == "succeeded" && nul.output?.hasSuffix("before\u{FFFD}after") == true, "\(nul.output ?? "-")")
            let auth = try await run("auth")
            let heard = server.requests.first { ($0["path"] as? String) == "/echo-auth" }
            #expect((heard?["headers"] as? [String: String])?["authorization"] == "Bearer \(token)")
            #expect(auth.status == "succeeded" && auth.output?.hasSuffix("auth Bearer ***") == true, "\(auth.output ?? "-")")
        }
    }

    @Test("a host written with %-encoding is refused when the job is saved, and by the allow list")
    func encodedHostsRefused() async throws {
        try await TestDatabase.withFresh { database, _ in
            for url in ["http://169.254.169.254%00.allowed.example/", "http://user@allowed.example/", "http://allowed.example%2F@x/"] {
                await #expect(throws: TockError.self, "\(url)") { try await database.createJob(job("bad", HTTPRequestSpec(url: url))) }
            }
        }
        let allow = try HostAllowList("*.allowed.example", field: "http-allow")
        #expect(allow.allows(host: "api.allowed.example"))
        #expect(!allow.allows(host: "169.254.169.254\u{0}.allowed.example") && !allow.allows(host: "a b.allowed.example"))
    }

    @Test("a worker refuses hosts outside --http-allow, and sends nothing without one (SSRF)")
    func hostsRefused() async throws {
        let server = try Server()
        try await server.listening()
        let directory = try makeScriptsDirectory(["unused.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            // The metadata service a cloud offers every host, and the test server by another name than the one allowed.
            _ = try await database.createJob(job("metadata", HTTPRequestSpec(method: "GET", url: "http://169.254.169.254/latest/meta-data/")))
            _ = try await database.createJob(job("local", HTTPRequestSpec(method: "GET", url: "http://localhost:\(server.port)/ok")))
            for allow in ["", "api.example.com,*.internal.example"] {
                var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
                configuration.httpAllow = try HostAllowList(allow, field: "http-allow")
                let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
                let metadata = try await database.runNow("metadata"), local = try await database.runNow("local")
                try await withServices([worker]) { () async throws -> Void in
                    #expect(try await eventually {
                        try await [metadata, local].asyncAllSatisfy { try await database.run($0, withOutput: false).status == "failed" }
                    })
                }
                for run in [metadata, local] {
                    let error = try await database.run(run).error ?? ""
                    #expect(allow.isEmpty ? error.contains("this worker sends no HTTP requests: start it with --http-allow HOST")
                                          : error.contains("is not in this worker's --http-allow"), "\(error)")
                }
            }
            #expect(server.requests.isEmpty, "\(server.requests)")
        }
    }
}

extension Array {
    func asyncAllSatisfy(_ predicate: (Element) async throws -> Bool) async rethrows -> Bool {
        for element in self where !(try await predicate(element)) { return false }
        return true
    }
}
