import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// What README promises of the processes as an operator sees them: SIGTERM ends `tock api` and `tock up` cleanly,
/// the event stream over real HTTP takes its token as `?access_token=`, and the exit statuses 5 and 6.
@Suite("processes and their signals, the event stream over HTTP, the CLI's exit statuses")
struct ServiceSignalTests {
    /// Waits until `port` answers the public OpenAPI document (the server is up), within `timeout`.
    static func waitForAPI(port: Int, timeout: Duration = .seconds(60)) async throws -> Bool {
        try await eventually(timeout: timeout, interval: .milliseconds(50)) {
            let response = try? await HTTPStream.exchange(
                port: port, "GET /api/v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return response?.hasPrefix("HTTP/1.1 200") == true
        }
    }

    static func get(port: Int, _ target: String, headers: String = "") async throws -> String {
        try await HTTPStream.exchange(port: port, "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)Connection: close\r\n\r\n")
    }

    /// Whether anything accepts connections on `port`.
    static func listening(_ port: Int) async -> Bool {
        guard let stream = try? await HTTPStream.open(port: port, "") else { return false }
        await stream.close()
        return true
    }

    /// The JSON of each `data:` line of an event stream.
    static func events(_ text: String) -> [[String: Any]] {
        text.split(whereSeparator: \.isNewline).compactMap { line -> [String: Any]? in
            guard line.hasPrefix("data: ") else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
        }
    }

    @Test("the event stream over real HTTP takes its token as ?access_token= (and only it does), and relays run events")
    func eventStreamWithAccessToken() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let token = "event-stream-reader-0123456789"
        try await TestDatabase.withFresh { database, settings in
            let port = try TestPorts.free()
            let api = try TockProcess(["api", "--api-port", "\(port)"], settings: settings, directory: directory,
                                      environment: ["TOCK_API_TOKENS": "\(token):read"])
            defer { api.signal(SIGKILL) }
            #expect(try await Self.waitForAPI(port: port), "\(api.log)")
            _ = try await database.createJob(JobDefinition(name: "watched", script: "x.sh"))

            // No token, a wrong one, and the token in the query of a route other than the event stream: refused.
            for target in ["/api/v1/events", "/api/v1/events?access_token=wrong-token-0123456789",
                           "/api/v1/jobs?access_token=\(token)"] {
                let response = try await Self.get(port: port, target)
                #expect(response.hasPrefix("HTTP/1.1 401"), "\(target): \(response)")
                #expect(!response.contains("watched"), "\(target) answered data")
            }
            let stream = try await HTTPStream.open(port: port,
                "GET /api/v1/events?access_token=\(token) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            #expect(try await eventually { stream.text.contains(": connected") }, "\(stream.text)")
            #expect(stream.status == 200)
            #expect(stream.text.lowercased().contains("content-type: text/event-stream"), "\(stream.text)")
            // A change in the database reaches the open stream: the run-now's event names the run.
            let run = try await database.runNow("watched")
            #expect(try await eventually {
                Self.events(stream.text).contains { ($0["type"] as? String) == "runs" && (($0["runs"] as? [Int]) ?? []).contains(Int(run)) }
            }, "\(stream.text)")
            await stream.close()
        }
    }

    @Test("SIGTERM to tock api with an event stream open: the stream ends, the process exits 0 and stops listening")
    func sigtermAPI() async throws {
        let directory = try makeScriptsDirectory([:])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { _, settings in
            let port = try TestPorts.free()
            let api = try TockProcess(["api", "--api-port", "\(port)"], settings: settings, directory: directory)
            defer { api.signal(SIGKILL) }
            #expect(try await Self.waitForAPI(port: port), "\(api.log)")
            let stream = try await HTTPStream.open(port: port, "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try await eventually { stream.text.contains(": connected") }, "\(stream.text)")
            api.signal(SIGTERM)
            // The default wait (30 s) is far above a stop with nothing to drain; an open stream must not hold it.
            #expect(try await api.wait() == 0, "\(api.log)")
            #expect(try await eventually(timeout: .seconds(5)) { stream.isClosed }, "the server left the event stream open")
            #expect(await !Self.listening(port))
            await stream.close()
        }
    }

    @Test("SIGTERM to tock up with a run in flight: exit 0, the run handed back unused, worker and scheduler gone")
    func sigtermUp() async throws {
        let pidFile = NSTemporaryDirectory() + "tock-up-pid-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let directory = try makeScriptsDirectory(["scripts/long.sh": "#!/bin/sh\necho $$ > \(pidFile)\nexec sleep 300\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            let port = try TestPorts.free()
            let up = try TockProcess(["up", "--api-port", "\(port)", "--scripts-dir", directory + "/scripts",
                                      "--shutdown-grace-seconds", "1", "--kill-grace-seconds", "1"],
                                     settings: settings, directory: directory)
            defer { up.signal(SIGKILL) }
            #expect(try await Self.waitForAPI(port: port), "\(up.log)")
            #expect(try await eventually { try await database.schedulersAlive() == 1 }, "\(up.log)")
            _ = try await database.createJob(JobDefinition(name: "long", script: "long.sh"))
            let run = try await database.runNow("long")
            #expect(try await eventually { !pidsWritten(to: pidFile).isEmpty }, "\(up.log)")
            let script = try #require(pidsWritten(to: pidFile).first)

            up.signal(SIGTERM)
            // The grace (1 s) and the kill grace (1 s) are the whole wait a clean stop has: 30 s is far above them.
            #expect(try await up.wait() == 0, "\(up.log)")
            let handedBack = try await database.run(run, withOutput: false)
            #expect(handedBack.status == "pending" && handedBack.attempt == 1 && handedBack.workerId == nil,
                    "\(handedBack.status) attempt \(handedBack.attempt) on \(handedBack.workerId.map(String.init) ?? "-")")
            #expect(try await database.runs(job: "long").count == 1, "a stop is not a failed attempt")
            #expect(try await database.workers().map(\.state) == ["stopped"])
            #expect(try await database.schedulersAlive() == 0)
            #expect(!processIsRunning(script), "the script outlived tock up")
            #expect(await !Self.listening(port))
        }
    }

    @Test("exit status 5 when PostgreSQL cannot be reached, 6 when the role lacks the privilege; one line on stderr")
    func exitStatuses() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { _, settings in
            var refused = settings
            refused.endpoint = .tcp(host: "127.0.0.1", port: try TestPorts.free())
            for unreachable in [refused, settings.with(database: "tock_no_such_database")] {
                let started = ContinuousClock.now
                let result = try await runTock(["job", "list"], settings: unreachable, directory: directory)
                print("exitStatuses: \(unreachable.displayName): exit \(result.status) after \(ContinuousClock.now - started)")
                #expect(result.status == 5, "\(unreachable.displayName): \(result.status) \(result.stderr)")
                #expect(result.stderr.hasPrefix("error: ") && result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            }

            // A login that may read (tock_viewer) but not write.
            let viewer = "tock_t_cli_viewer"
            try await TestDatabase.withClient(settings) { client in
                _ = try await client.query(PostgresQuery(unsafeSQL: """
                    DO $$ BEGIN
                        CREATE ROLE \(viewer) LOGIN PASSWORD '\(TestDatabase.rolePassword)' IN ROLE tock_viewer;
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN
                        ALTER ROLE \(viewer) PASSWORD '\(TestDatabase.rolePassword)';
                    END $$
                    """)).collect()
            }
            var asViewer = settings
            asViewer.username = viewer
            asViewer.password = TestDatabase.rolePassword
            let read = try await runTock(["job", "list"], settings: asViewer, directory: directory)
            #expect(read.status == 0, "\(read.stderr)")
            let add = try await runTock(["job", "add", "x", "--script", "a.sh"], settings: asViewer, directory: directory)
            #expect(add.status == 6, "\(add.status) \(add.stderr)")
            #expect(add.stderr.hasPrefix("error: ") && add.stderr.split(separator: "\n").count == 1, "\(add.stderr)")
            #expect(add.stderr.contains("tock_admin"), "the message names the role to use: \(add.stderr)")
        }
    }
}
