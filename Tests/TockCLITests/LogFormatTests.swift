import Foundation
import Testing
import TockCore
import TockTesting

@Suite("log lines")
struct LogFormatTests {
    @Test("text format: a value with a newline stays on its event's line, escaped")
    func newlineInValue() async throws {
        let directory = NSTemporaryDirectory() + "tock-log-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The database's user name is in the metadata of the line that says it cannot start (nothing listens on
        // port 1), and in the error it exits with.
        var settings = try TestDatabase.serverSettings()
        settings.username = "evil\ninjected level=critical\tx\\n"
        settings.endpoint = .tcp(host: "127.0.0.1", port: 1)
        let api = try TockProcess(["api", "--api-port", "0", "--log-format", "text"], settings: settings, directory: directory)
        defer { if api.isRunning { api.signal(SIGKILL) } }
        try await api.wait()
        let lines = api.log.split(separator: "\n")
        let running = try #require(lines.first { $0.contains("cannot start") })
        #expect(running.contains(#"evil\ninjected level=critical\tx\\n@127.0.0.1:1"#), "\(running)")
        let exit = try #require(lines.first { $0.hasPrefix("error: ") })
        #expect(exit.contains(#"evil\ninjected level=critical\tx\\n@127.0.0.1:1"#), "\(exit)")
        #expect(!lines.contains { $0.hasPrefix("injected") }, "\(api.log)")
    }
}
