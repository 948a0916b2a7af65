import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

@Suite("parameters: declared by a job, checked in SQL when a run is triggered")
struct ParameterTests {
    static func runCount(_ database: Database) async throws -> Int {
        try await database.client.query("SELECT count(*)::int FROM tock.runs").decode(Int.self).all().first ?? -1
    }

    @Test("a trigger's values are checked: undeclared, disallowed, missing or malformed ones are refused naming the parameter, and nothing is enqueued")
    func triggerValuesChecked() async throws {
        try await TestDatabase.withFresh { database, _ in
            var job = JobDefinition(name: "deploy", script: "d.sh", args: ["{{env}}"])
            job.params = [ParamDefinition(name: "env", default: "staging", choices: ["staging", "prod"]),
                          ParamDefinition(name: "ticket", required: true, pattern: "[A-Z]+-[0-9]+")]
            _ = try await database.createJob(job)
            _ = try await database.createJob(JobDefinition(name: "plain", script: "p.sh"))
            let refused: [(job: String, params: String, says: String)] = [
                ("deploy", #"{"ticket": "OPS-1", "colour": "red"}"#, "colour is not a parameter of this job; it takes env, ticket"),
                ("deploy", #"{"ticket": "OPS-1", "env": "dev"}"#, "parameter env: 'dev' is not allowed (one of staging, prod)"),
                ("deploy", #"{"ticket": "ops-1"}"#, "parameter ticket: 'ops-1' is not allowed (it must match [A-Z]+-[0-9]+)"),
                // Matched whole: a value that only contains a match is refused.
                ("deploy", #"{"ticket": "x OPS-1 y"}"#, "it must match"),
                ("deploy", #"{}"#, "parameter ticket is required"),
                ("deploy", #"{"ticket": ["OPS-1"]}"#, "parameter ticket: expected a string"),
                ("deploy", #"{"ticket": "OPS-1\u0007"}"#, "no control characters"),
                ("deploy", #"["OPS-1"]"#, "expected a JSON object of parameter values"),
                ("plain", #"{"env": "prod"}"#, "env is not a parameter of this job; it takes none"),
            ]
            for (name, params, says) in refused {
                do {
                    _ = try await database.runNow(name, key: nil, params: params)
                    Issue.record("\(params) was accepted")
                } catch let error as TockError {
                    #expect(error.kind == .invalidInput && error.field == "params" && error.message.contains(says),
                            "\(params): \(error.kind) \(error.field ?? "-") \(error.message)")
                }
            }
            #expect(try await Self.runCount(database) == 0)

            // Numbers and true/false are taken as their text; the defaults fill in; a replayed key answers its
            // first run whatever the values.
            let first = try await database.runNow("deploy", key: "k", params: #"{"ticket": "OPS-7"}"#)
            #expect(try await database.run(first.runId, withOutput: false).params == ["env": "staging", "ticket": "OPS-7"])
            let replay = try await database.runNow("deploy", key: "k", params: #"{"ticket": "OPS-8", "env": "prod"}"#)
            #expect(replay.replayed && replay.runId == first.runId)
            var numbers = JobDefinition(name: "numbers", script: "n.sh")
            numbers.params = [ParamDefinition(name: "count"), ParamDefinition(name: "dry")]
            _ = try await database.createJob(numbers)
            let counted = try await database.runNow("numbers", key: nil, params: #"{"count": 3, "dry": true}"#)
            #expect(try await database.run(counted.runId, withOutput: false).params == ["count": "3", "dry": "true"])
            // From psql, by name.
            let sql = try await database.client.query(#"SELECT tock.run_now('deploy', p_params => '{"ticket": "OPS-9"}')"#)
                .decode(Int64.self).all()
            #expect(try await database.run(try #require(sql.first), withOutput: false).params?["ticket"] == "OPS-9")
        }
    }

    @Test("a job's declarations are checked when it is saved: names, choices, patterns, defaults, placeholders and schedules")
    func declarationsChecked() async throws {
        try await TestDatabase.withFresh { database, _ in
            let refused: [(json: String, field: String, says: String)] = [
                (#""params": [{"name": "1x"}]"#, "params", "is not a parameter name"),
                (#""params": [{"name": "x"}, {"name": "X"}]"#, "params", "declared twice"),
                (#""params": [{"name": "x", "pattern": "("}]"#, "params", "is not a regular expression"),
                (#""params": [{"name": "x", "choices": ["a"], "default": "b"}]"#, "params", "its default 'b' is not among its choices"),
                (#""params": [{"name": "x", "colour": "red"}]"#, "params", "unknown field(s) colour"),
                (#""params": [{"name": "x", "required": "yes"}]"#, "params", "required is true or false"),
                (#""params": {"x": {}}"#, "params", "expected an array of parameter declarations"),
                (#""args": ["{{y}}"], "params": [{"name": "x"}]"#, "args", "{{y}} names no parameter of the job; it declares x"),
                (#""schedule": "every 5m", "params": [{"name": "x", "required": true}]"#, "params",
                 "parameter x is required and has no default, but the job runs on a schedule"),
                (#""description": "\#(String(repeating: "d", count: 2001))""#, "description", "at most 2,000 characters"),
            ]
            for (fields, field, says) in refused {
                do {
                    _ = try await database.createJob(json: #"{"name": "j", "script": "j.sh", \#(fields)}"#)
                    Issue.record("\(fields) was accepted")
                } catch let error as TockError {
                    #expect(error.field == field && error.message.contains(says), "\(fields): \(error.field ?? "-") \(error.message)")
                }
            }
            #expect(try await database.jobs().isEmpty)
            // Thirty-three declarations: too many.
            let many = (1...33).map { #"{"name": "p\#($0)"}"# }.joined(separator: ",")
            await #expect(throws: TockError.self) { try await database.createJob(json: #"{"name": "j", "script": "j.sh", "params": [\#(many)]}"#) }

            // Saved in a canonical form, shown by the job; an edit replaces them, null removes them.
            let id = try await database.createJob(json: """
                {"name": "j", "script": "j.sh", "description": "  Deploys the app.\\nAsk #ops first.  ",
                 "params": [{"name": "env", "choices": ["a", "b"], "default": "a", "required": false}]}
                """)
            var info = try await database.job("j")
            #expect(info.id == id && info.description == "Deploys the app.\nAsk #ops first.")
            #expect(info.params == [ParamDefinition(name: "env", default: "a", choices: ["a", "b"])])
            _ = try await database.updateJob("j", json: #"{"params": [{"name": "ticket", "required": true}]}"#)
            #expect(try await database.job("j").params == [ParamDefinition(name: "ticket", required: true)])
            _ = try await database.updateJob("j", json: #"{"params": null, "description": null}"#)
            info = try await database.job("j")
            #expect(info.params == nil && info.description == nil)
        }
    }

    @Test("a worker whose registration's answer was lost registers again as itself, not as a second worker")
    func registrationRepeated() async throws {
        try await TestDatabase.withFresh { owner, _ in
            var database = owner
            database.leaseToken = WorkerLease.newToken()
            let first = try await database.registerWorker(host: "h", pid: 7, concurrency: 1, scriptsDirectory: nil, version: nil,
                                                          name: "w1")
            let again = try await database.registerWorker(host: "h", pid: 7, concurrency: 1, scriptsDirectory: nil, version: nil,
                                                          name: "w1")
            #expect(again == first)
            // Another process (another lease token) asking for the name is still refused.
            var other = database
            other.leaseToken = WorkerLease.newToken()
            await #expect(throws: TockError.self) {
                try await other.registerWorker(host: "h", pid: 8, concurrency: 1, scriptsDirectory: nil, version: nil, name: "w1")
            }
            let unnamed = try await database.registerWorker(host: "h", pid: 9, concurrency: 1, scriptsDirectory: nil, version: nil)
            #expect(try await database.registerWorker(host: "h", pid: 9, concurrency: 1, scriptsDirectory: nil, version: nil) == unnamed)
        }
    }
}
