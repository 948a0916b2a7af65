import Foundation
import Testing
import TockCore
import TockTesting

@Suite("a wrong database or an unreachable server fails every command at once, with the cause and exit 5")
struct ConnectFailFastTests {
    /// Runs `tock arguments` against `url` and says how it ended and how long it took.
    func run(_ arguments: [String], url: String) async throws -> (status: Int32, stdout: String, stderr: String, seconds: Double) {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let start = ContinuousClock.now
        let result = try await runProgramOffPool(tockBinary, arguments, environment: ["DATABASE_URL": url, "PATH": "/usr/bin:/bin"],
                                    directory: directory)
        let elapsed = ContinuousClock.now - start
        return (result.status, result.stdout, result.stderr,
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// Every kind of command: a read, a write, the migrator, and long-running services that would otherwise retry.
    static let commands: [[String]] = [
        ["job", "list"], ["job", "add", "x", "--script", "a.sh"], ["migrate"], ["status"],
        ["scheduler"], ["worker", "--scripts-dir", "scripts"], ["api", "--api-port", "0"], ["notifier"],
        ["up", "--scripts-dir", "scripts", "--api-port", "0"],
    ]

    func expectFailsFast(url: String, cause: String) async throws {
        for command in Self.commands {
            let result = try await run(command, url: url)
            #expect(result.status == 5, "tock \(command.joined(separator: " ")): \(result.stderr)")
            #expect(result.stderr.contains(cause), "tock \(command.joined(separator: " ")): \(result.stderr)")
            // The call deadline is 30 s (10 s for services; a silent server waits it out, DatabaseErrorTests): a
            // command that ends sooner ended on the cause, not on the deadline.
            #expect(result.seconds < 10, "tock \(command.joined(separator: " ")) took \(result.seconds) s")
        }
        let doctor = try await run(["doctor"], url: url)
        #expect(doctor.status == 5, "\(doctor.stderr)")
        #expect((doctor.stdout + doctor.stderr).contains(cause), "tock doctor: \(doctor.stdout)\(doctor.stderr)")
        #expect(doctor.seconds < 10, "tock doctor took \(doctor.seconds) s")
    }

    @Test("a database that does not exist")
    func missingDatabase() async throws {
        let settings = try TestDatabase.serverSettings().with(database: "tock_no_such_database")
        try await expectFailsFast(url: settings.url(), cause: "database \"tock_no_such_database\" does not exist (SQLSTATE 3D000)")
    }

    @Test("a wrong password")
    func wrongPassword() async throws {
        var settings = try await TestDatabase.create()
        settings.password = "not-the-password"
        try await expectFailsFast(url: settings.url(), cause: "password authentication failed")
    }

    @Test("no password where the server asks for one")
    func missingPassword() async throws {
        var settings = try await TestDatabase.create()
        settings.password = nil
        try await expectFailsFast(url: settings.url(), cause: "asks for a password and the connection settings have none")
    }

    @Test("a socket directory with no server in it")
    func missingSocket() async throws {
        let directory = NSTemporaryDirectory() + "tock-no-server-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await expectFailsFast(url: "postgres://tock@/tock?host=\(directory)&port=5432", cause: "does not exist")
    }

    @Test("a TCP port nothing listens on")
    func refusedPort() async throws {
        let port = try FakePostgres(.silent).port  // bound, then closed when the value goes
        try await expectFailsFast(url: "postgres://tock@127.0.0.1:\(port)/tock", cause: "connection refused")
    }

    @Test("a server that refuses TLS when the settings require it")
    func tlsRefused() async throws {
        let server = try FakePostgres(.refuseTLS)
        try await expectFailsFast(url: "postgres://tock@127.0.0.1:\(server.port)/tock?sslmode=require", cause: "does not accept TLS")
        // Listening to the end: released after its last use, it closed its port, which another test's server in
        // this process could take (an HTTP server never answers the startup, and every command waited 30 s).
        withExtendedLifetime(server) {}
    }
}
