import Foundation
import Testing
import TockCore
import TockTesting

/// A real PgBouncer (Debian's, which ops/test installs) in front of the test cluster, with one database entry in
/// transaction mode and one in session mode.
final class PgBouncer: @unchecked Sendable {
    let process = Process()
    let port: Int
    let directory: String

    init(database: String) throws {
        port = try TestPorts.free()
        let server = try TestDatabase.serverSettings()
        let (host, serverPort): (String, Int) = switch server.endpoint {
        case .tcp(let host, let port): (host, port)
        case .unixSocket(let path):
            (URL(fileURLWithPath: path).deletingLastPathComponent().path, Int(path.split(separator: ".").last ?? "5432") ?? 5432)
        }
        directory = NSTemporaryDirectory() + "tock-pgbouncer-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o777])
        let target = "host=\(host) port=\(serverPort) dbname=\(database) user=\(server.username)"
            + (server.password.map { " password=\($0)" } ?? "")
        try """
            [databases]
            tx = \(target) pool_mode=transaction
            sess = \(target) pool_mode=session
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = trust
            auth_file = \(directory)/users.txt
            default_pool_size = 20
            ignore_startup_parameters = extra_float_digits,options
            """.write(toFile: directory + "/pgbouncer.ini", atomically: true, encoding: .utf8)
        try "\"\(server.username)\" \"\"\n".write(toFile: directory + "/users.txt", atomically: true, encoding: .utf8)
        for file in ["pgbouncer.ini", "users.txt"] {
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: directory + "/" + file)
        }
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else {
            throw TockError(.unavailable, "pgbouncer is not installed: run ops/test, which installs it (apt-get install -y pgbouncer)")
        }
        // PgBouncer refuses to run as root.
        if getuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", "postgres", "--", binary, directory + "/pgbouncer.ini"]
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = [directory + "/pgbouncer.ini"]
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func settings(_ database: String) throws -> ConnectionSettings {
        ConnectionSettings(endpoint: .tcp(host: "127.0.0.1", port: port), username: try TestDatabase.serverSettings().username,
                           database: database)
    }

    /// SIGTERM (runuser passes it on), then wait by polling: Process.waitUntilExit spins a run loop that is not
    /// safe on the concurrency pool.
    func stop() async throws {
        process.terminate()
        _ = try await eventually(timeout: .seconds(10), interval: .milliseconds(50)) { !self.process.isRunning }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

@Suite("through PgBouncer: session mode as direct; transaction mode falls back to polling and says so")
struct PgBouncerTests {
    @Test("worker and scheduler through PgBouncer in transaction mode log the fallback and still run manual and scheduled runs")
    func transactionMode() async throws {
        let directory = try makeScriptsDirectory(["scripts/hi.sh": "#!/bin/sh\necho hi\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let direct = try await TestDatabase.create()
        let bouncer = try PgBouncer(database: direct.database)
        let pooled = try bouncer.settings("tx")
        defer { Task { try? await bouncer.stop() } }
        #expect(try await eventually(timeout: .seconds(60)) {
            (try? await tock(["status"], settings: pooled, directory: directory))?.status == 0
        }, "PgBouncer did not come up on port \(bouncer.port)")
        let worker = try TockProcess(["worker"], settings: pooled, directory: directory)
        let scheduler = try TockProcess(["scheduler"], settings: pooled, directory: directory)
        defer { [worker, scheduler].forEach { $0.signal(SIGKILL) } }

        #expect(try await eventually(timeout: .seconds(60)) {
            worker.log.contains("LISTEN/NOTIFY does not work") && scheduler.log.contains("LISTEN/NOTIFY does not work")
        }, "worker: \(worker.log)\nscheduler: \(scheduler.log)")
        #expect(try await tock(["job", "add", "hi", "--script", "hi.sh", "--schedule", "every 2 seconds"],
                         settings: pooled, directory: directory).status == 0)
        let run = try await tock(["job", "run", "hi", "--wait", "--wait-timeout", "20"], settings: pooled, directory: directory)
        #expect(run.status == 0 && run.stdout.contains("hi"), "\(run.stdout)\(run.stderr)\n\(worker.log)")
        #expect(try await eventually(timeout: .seconds(20)) {
            let runs = try await tock(["runs", "--job", "hi", "--status", "succeeded", "--json"], settings: direct, directory: directory)
            return runs.stdout.components(separatedBy: "\"trigger\" : \"schedule\"").count - 1 >= 2
        }, "scheduled runs through transaction pooling: \(scheduler.log)")
        let doctor = try await tock(["doctor"], settings: pooled, directory: directory)
        #expect(doctor.status == 1 && doctor.stdout.contains("FAIL  notify"), "\(doctor.stdout)")
    }

    @Test("in session mode a run-now wakes the worker through NOTIFY and doctor passes the round trip")
    func sessionMode() async throws {
        let directory = try makeScriptsDirectory(["scripts/hi.sh": "#!/bin/sh\necho hi\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let direct = try await TestDatabase.create()
        let bouncer = try PgBouncer(database: direct.database)
        let pooled = try bouncer.settings("sess")
        defer { Task { try? await bouncer.stop() } }
        #expect(try await eventually(timeout: .seconds(60)) {
            (try? await tock(["status"], settings: pooled, directory: directory))?.status == 0
        })
        // The sweep an hour away (TockProcess's default): only NOTIFY can make this run start in time.
        let worker = try TockProcess(["worker"], settings: pooled, directory: directory)
        defer { worker.signal(SIGKILL) }
        #expect(try await tock(["job", "add", "hi", "--script", "hi.sh"], settings: pooled, directory: directory).status == 0)
        #expect(try await eventually(timeout: .seconds(60)) { worker.log.contains("worker started") })
        try await Task.sleep(for: .seconds(3))  // past the listener's probe
        let run = try await tock(["job", "run", "hi", "--wait", "--wait-timeout", "20"], settings: pooled, directory: directory)
        #expect(run.status == 0, "\(run.stderr)\n\(worker.log)")
        #expect(!worker.log.contains("LISTEN/NOTIFY does not work"), "\(worker.log)")
        let doctor = try await tock(["doctor"], settings: pooled, directory: directory)
        #expect(doctor.stdout.contains("ok    notify"), "\(doctor.stdout)")
    }
}
