import Foundation
import Testing
import TockCore
import TockCluster
import TockTesting

/// The embedded cluster is the superuser's: a process that reaches its socket without the password (a job's
/// script, say) gets nothing.
@Suite("the embedded cluster's authentication")
struct EmbeddedClusterTests {
    /// psql as a script would run it, against the cluster's socket; returns its exit status and output.
    static func psql(_ settings: ConnectionSettings, password: String?) throws -> (Int32, String) {
        guard case .unixSocket(let path) = settings.endpoint else { throw TockError(.failed, "not a socket") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", "-X", "-w", "-h", URL(fileURLWithPath: path).deletingLastPathComponent().path,
                             "-U", "postgres", "-d", "tock", "-tAc", "SELECT current_user"]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
        environment["PGPASSWORD"] = password
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test("a new cluster and one made before passwords both refuse a connection without the superuser's password")
    func passwordRequired() async throws {
        // initdb, pg_ctl -w and psql block: on a thread of their own, not one of the cooperative pool's two.
        try await offThePool { try Self.passwordRequiredBlocking() }
    }

    static func passwordRequiredBlocking() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("tock-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let cluster = EmbeddedCluster(directory: home, logger: TestDatabase.logger)
        defer {
            try? cluster.stop()
            try? FileManager.default.removeItem(atPath: home)
        }
        var settings = try cluster.start()
        let passwordFile = home + "/postgres/password"
        let password = try #require(settings.password)
        #expect(password.count == 64)
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: passwordFile)[.posixPermissions] as? Int)
        #expect(mode == 0o600, "password file mode \(String(mode, radix: 8))")
        var (status, output) = try psql(settings, password: nil)
        #expect(status != 0 && output.contains("password"), "without a password: \(status) \(output)")
        (status, output) = try psql(settings, password: "wrong")
        #expect(status != 0 && output.contains("password authentication failed"), "a wrong one: \(status) \(output)")
        (status, output) = try psql(settings, password: password)
        #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == "postgres", "\(status) \(output)")

        // As a cluster made before passwords: trust for every local connection, and no password file.
        try cluster.stop()
        try "local all all trust\n".write(toFile: home + "/postgres/data/pg_hba.conf", atomically: false, encoding: .utf8)
        try FileManager.default.removeItem(atPath: passwordFile)
        settings = try cluster.start()
        let newPassword = try #require(settings.password)
        #expect(newPassword != password)
        (status, output) = try psql(settings, password: nil)
        #expect(status != 0 && output.contains("password"), "after the upgrade, without a password: \(status) \(output)")
        (status, output) = try psql(settings, password: newPassword)
        #expect(status == 0, "after the upgrade, with the password: \(status) \(output)")
    }
}
