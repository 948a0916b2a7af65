import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

@Suite("parameters reach the script")
struct ParameterWorkerTests {
    /// A job whose script prints its parameters' variables and its arguments, one per line.
    static let printing = ["show.sh": """
        #!/bin/sh
        echo "env=$TOCK_PARAM_ENV"
        echo "ticket=$TOCK_PARAM_TICKET"
        for argument in "$@"; do echo "arg=$argument"; done
        env | grep '^TOCK_PARAM_' | sort | sed 's/^/var=/'
        """]

    static let deploy: JobDefinition = {
        var job = JobDefinition(name: "deploy", script: "show.sh", args: ["--env={{env}}", "{{ticket}}", "plain"])
        job.params = [ParamDefinition(name: "env", default: "staging", choices: ["staging", "prod"]),
                      ParamDefinition(name: "ticket", required: true, pattern: ".{1,200}")]
        return job
    }()

    @Test("a run gets its values as TOCK_PARAM_<NAME> and in {{name}} arguments, never through a shell; a retry keeps them")
    func valuesReachScript() async throws {
        let directory = try makeScriptsDirectory(Self.printing)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("tock-param-\(UUID().uuidString)").path
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(Self.deploy)
            // What a shell would run, and a value holding another parameter's placeholder: both stay text.
            let hostile = "$(touch \(marker)); {{env}} `id` \"quoted\" 'single'"
            let run = try await database.runNow("deploy", key: nil, params: #"{"env": "prod", "ticket": \#(jsonString(hostile))}"#).runId
            let worker = try Worker(database: database, settings: settings,
                                    configuration: .testing(scriptsDirectory: directory), logger: TestDatabase.logger)
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" })
            }
            let info = try await database.run(run)
            let lines = (info.output ?? "").split(separator: "\n").map(String.init)
            #expect(lines == ["env=prod", "ticket=\(hostile)", "arg=--env=prod", "arg=\(hostile)", "arg=plain",
                              "var=TOCK_PARAM_ENV=prod", "var=TOCK_PARAM_TICKET=\(hostile)"], "\(lines)")
            #expect(info.params == ["env": "prod", "ticket": hostile])
            #expect(!FileManager.default.fileExists(atPath: marker), "a value ran as a command")

            // A retry runs with the values of the run it retries.
            let retried = try await database.retry(run)
            #expect(try await database.run(retried, withOutput: false).params == ["env": "prod", "ticket": hostile])
        }
    }

    @Test("a scheduled run takes the defaults")
    func scheduledRunTakesDefaults() async throws {
        let directory = try makeScriptsDirectory(Self.printing)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            var job = JobDefinition(name: "nightly", script: "show.sh", args: ["{{env}}"], schedule: "every 1h")
            job.params = [ParamDefinition(name: "env", default: "staging")]
            _ = try await database.createJob(job)
            _ = try await database.client.query("UPDATE tock.jobs SET next_run_at = now() - interval '1 second'").collect()
            _ = try await database.client.query("SELECT tock.tick()").collect()
            let run = try #require(try await database.runs(job: "nightly").first)
            #expect(run.params == ["env": "staging"])
            let worker = try Worker(database: database, settings: settings,
                                    configuration: .testing(scriptsDirectory: directory), logger: TestDatabase.logger)
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run.id, withOutput: false).status == "succeeded" })
            }
            #expect(try await database.run(run.id).output?.contains("arg=staging\n") == true)
        }
    }

    @Test("values written into tock.runs by hand add only TOCK_PARAM_ variables with safe names")
    func handWrittenValuesStayInTheirLane() async throws {
        let directory = try makeScriptsDirectory(Self.printing)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(Self.deploy)
            let run = try await database.runNow("deploy", key: nil, params: #"{"ticket": "T-1"}"#).runId
            // The owner rewrites the values past every check: names no script variable may carry.
            _ = try await database.client.query(PostgresQuery(unsafeSQL: """
                UPDATE tock.runs SET params = '{"ticket": "T-2", "a b": "1", "x=y": "2", "ld_preload": "/tmp/evil.so", "": "3"}'
                WHERE id = \(run)
                """)).collect()
            let worker = try Worker(database: database, settings: settings,
                                    configuration: .testing(scriptsDirectory: directory), logger: TestDatabase.logger)
            try await withServices([worker]) { () async throws -> Void in
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" })
            }
            let output = try await database.run(run).output ?? ""
            let variables = output.split(separator: "\n").filter { $0.hasPrefix("var=") }
            // TOCK_PARAM_LD_PRELOAD is a harmless name: the loader reads LD_PRELOAD only.
            #expect(variables == ["var=TOCK_PARAM_LD_PRELOAD=/tmp/evil.so", "var=TOCK_PARAM_TICKET=T-2"], "\(output)")
        }
    }

    private func jsonString(_ text: String) -> String {
        String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
    }
}
