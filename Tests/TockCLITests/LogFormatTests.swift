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
        // The database's user name is in `tock running`'s metadata; nothing needs to listen for it to be logged.
        var settings = try TestDatabase.serverSettings()
        settings.username = "evil\ninjected level=critical\tx\\n"
        settings.endpoint = .tcp(host: "127.0.0.1", port: 1)
        let api = try TockProcess(["api", "--api-port", "0", "--log-format", "text"], settings: settings, directory: directory)
        defer { if api.isRunning { api.signal(SIGKILL) } }
        #expect(try await eventually(timeout: .seconds(30)) { api.log.contains("tock running") }, "\(api.log)")
        api.signal(SIGTERM)
        try await api.wait()
        let lines = api.log.split(separator: "\n")
        let running = try #require(lines.first { $0.contains("tock running") })
        #expect(running.contains(#"evil\ninjected level=critical\tx\\n@127.0.0.1:1"#), "\(running)")
        #expect(!lines.contains { $0.hasPrefix("injected") }, "\(api.log)")
    }
}
