import Foundation
import Testing
import TockCLI
import TockCore
import TockTesting

@Suite("every option of worker, scheduler, api and up from TOCK_* variables; a worker's stable --name")
struct EnvironmentOptionsTests {
    @Test("variables become options after the command line's, which win; a flag's variable is true or false; a service link is ignored")
    func arguments() throws {
        func expand(_ arguments: [String], _ environment: [String: String]) throws -> [String] {
            var ignored: [String] = []
            return try EnvironmentOptions.arguments(arguments, environment: environment, ignored: &ignored)
        }
        let environment = ["TOCK_CONCURRENCY": "3", "TOCK_SCRIPTS_DIR": "/srv/scripts", "TOCK_NO_API": "true",
                           "TOCK_API_PORT": "", "TOCK_NAME": "etl-1", "TOCK_UNKNOWN": "x"]
        #expect(try expand(["up", "--concurrency", "2"], environment)
            == ["up", "--concurrency", "2", "--name=etl-1", "--scripts-dir=/srv/scripts", "--no-api"])
        #expect(try expand(["worker", "--scripts-dir=/x"], environment) == ["worker", "--scripts-dir=/x", "--name=etl-1", "--concurrency=3"])
        // A value is one argument, whatever it holds: it cannot add options.
        #expect(try expand(["worker"], ["TOCK_NAME": "x --run-as root"]) == ["worker", "--name=x --run-as root"])
        // Commands that are not services, and the scheduler's options that a worker has, are left alone.
        #expect(try expand(["job", "list"], environment) == ["job", "list"])
        #expect(try expand(["scheduler"], environment) == ["scheduler"])
        #expect(try expand(["up"], ["TOCK_NO_API": "0"]) == ["up"])
        var ignored: [String] = []
        #expect(try EnvironmentOptions.arguments(["api"], environment: ["TOCK_API_PORT": "tcp://10.0.0.7:8080", "TOCK_API_HOST": "0.0.0.0"],
                                                 ignored: &ignored) == ["api", "--api-host=0.0.0.0"])
        #expect(ignored == ["TOCK_API_PORT"])
        let error = #expect(throws: TockError.self) { _ = try expand(["up"], ["TOCK_NO_API": "maybe"]) }
        #expect(error?.message == "TOCK_NO_API: 'maybe' is not true or false (--no-api)")
    }

    @Test("the table names every option of each service command but those all commands share", arguments: ["worker", "scheduler", "api", "up"])
    func everyOptionHasAVariable(command: String) async throws {
        let dump = try await runProgramOffPool(tockBinary, [command, "--experimental-dump-help"], environment: ["PATH": "/usr/bin:/bin"],
                                               directory: "/")
        let tool = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        let arguments = try #require((tool["command"] as? [String: Any])?["arguments"] as? [[String: Any]])
        let shared: Set = ["database-url", "home", "log-level", "log-format", "json", "version", "help"]
        let options = Set(arguments.flatMap { argument in
            ((argument["names"] as? [[String: Any]]) ?? []).filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
        }).subtracting(shared)
        #expect(options == Set((EnvironmentOptions.commands[command] ?? []).map(\.name)))
    }

    @Test("a real worker takes its name and concurrency from the environment; a second of that name waits for the first to stop")
    func workerFromEnvironment() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        let first = try TockProcess(["worker", "--concurrency", "2"], settings: settings, directory: directory,
                                    environment: ["TOCK_NAME": "etl-box", "TOCK_CONCURRENCY": "3", "TOCK_OUTPUT_CAP": "4096"])
        defer { first.signal(SIGKILL) }
        try await TestDatabase.withClient(settings) { client in
            func workers() async throws -> [String] {
                try await client.query("SELECT name || ' ' || concurrency || ' ' || state FROM tock.workers ORDER BY id")
                    .decode(String.self).all()
            }
            // The command line's --concurrency wins over TOCK_CONCURRENCY.
            #expect(try await eventually { try await workers() == ["etl-box 2 running"] }, "\(first.log)")
            // A second worker of that name waits while the first lives (a restart after a crash waits for its
            // predecessor to be judged lost), and takes the name once the first stops.
            let second = try TockProcess(["worker"], settings: settings, directory: directory, environment: ["TOCK_NAME": "etl-box"])
            defer { second.signal(SIGKILL) }
            #expect(try await eventually { second.log.contains("this worker's name is taken") }, "\(second.log)")
            #expect(try await workers() == ["etl-box 2 running"])
            first.signal(SIGTERM)
            #expect(try await first.wait() == 0)
            #expect(try await eventually {
                let names = try await workers()
                return names.count == 2 && names.first == "etl-box 2 stopped" && names.last?.hasSuffix(" running") == true
                    && names.last?.hasPrefix("etl-box ") == true
            }, "\(second.log)")
            // Registered first, then logged: wait for the line.
            #expect(try await eventually { second.log.contains("worker started") && second.log.contains("name=etl-box") },
                    "\(second.log)")
            let bad = try TockProcess(["worker"], settings: settings, directory: directory, environment: ["TOCK_NO_SUCH": "1", "TOCK_CONCURRENCY": "many"])
            // A bad value is the option's error, as on the command line (usage: exit 64); so is a bad flag's. Waited
            // for generously: once, with every other test running beside it, the exit was not seen within 30 s.
            let badStatus = try await bad.wait(timeout: .seconds(120))
            #expect(badStatus == 64 && bad.log.contains("--concurrency"), "exit \(badStatus.map(String.init) ?? "not yet"): \(bad.log)")
            let badFlag = try TockProcess(["up"], settings: settings, directory: directory, environment: ["TOCK_NO_API": "maybe"])
            let flagStatus = try await badFlag.wait(timeout: .seconds(120))
            #expect(flagStatus == 64 && badFlag.log.contains("TOCK_NO_API: 'maybe' is not true or false"),
                    "exit \(flagStatus.map(String.init) ?? "not yet"): \(badFlag.log)")
        }
    }
}
