import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TockAPI
import TockCore
import TockPostgres
import TockTesting

func body(_ response: TestResponse) -> String {
    String(buffer: response.body)
}

/// What every write sends: the API refuses any other content type (415), body or not.
let json: HTTPFields = [.contentType: "application/json"]

func object(_ response: TestResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(body(response).utf8)) as? [String: Any])
}

@Suite("JSON API over the views, against the real database")
struct APITests {
    @Test("list jobs, trigger one, read the run and its output, and find dead letters")
    func readAndTrigger() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "report.sh", schedule: "daily at 06:00",
                                                           timezone: "Asia/Hong_Kong"))
            var flaky = JobDefinition(name: "flaky", script: "x.sh")
            flaky.maxAttempts = 2
            _ = try await database.createJob(flaky)
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "application/json")
                    let jobs = try TockJSON.decoder().decode([JobInfo].self, from: Data(body(response).utf8))
                    #expect(jobs.map(\.name) == ["flaky", "report"])
                    #expect(jobs.last?.scheduleDescription == "daily at 06:00")
                }
                let runID = try await client.execute(uri: "/api/v1/jobs/report/trigger", method: .post, headers: json) { response in
                    #expect(response.status == .accepted)
                    return try #require(try object(response)["run_id"] as? Int)
                }
                // Finish it as a worker would, then read it back.
                let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 1, scriptsDirectory: nil, version: nil)
                _ = try await database.claimRuns(worker: worker, max: 1)
                _ = try await database.finishRun(Int64(runID), worker: worker,
                                                 outcome: RunOutcome(status: .succeeded, exitCode: 0, output: "done\n", outputBytes: 5))
                try await client.execute(uri: "/api/v1/runs/\(runID)", method: .get) { response in
                    let run = try TockJSON.decoder().decode(RunInfo.self, from: Data(body(response).utf8))
                    #expect(run.status == "succeeded")
                    #expect(run.trigger == "api")
                    #expect(run.output == "done\n")
                }
                try await client.execute(uri: "/api/v1/runs/\(runID)/output", method: .get) { response in
                    #expect(body(response) == "done\n")
                    #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
                }
                try await client.execute(uri: "/api/v1/jobs/report/runs?status=succeeded", method: .get) { response in
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(runs.map(\.id) == [Int64(runID)])
                }
                // Two failed attempts of 'flaky': the second is a dead letter.
                let first = try await database.runNow("flaky")
                _ = try await database.claimRuns(worker: worker, max: 1)
                _ = try await database.finishRun(first, worker: worker, outcome: RunOutcome(status: .failed, exitCode: 1, error: "exited with status 1"))
                _ = try await database.client.query("UPDATE tock.runs SET run_after = now() WHERE status = 'pending'").collect()
                let second = try #require(try await database.claimRuns(worker: worker, max: 1).first?.runId)
                _ = try await database.finishRun(second, worker: worker, outcome: RunOutcome(status: .failed, exitCode: 1, error: "exited with status 1"))
                try await client.execute(uri: "/api/v1/dead-letter", method: .get) { response in
                    let dead = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(dead.map(\.id) == [second])
                    #expect(dead.first?.error == "exited with status 1 (attempt 2 of 2: no attempts left)")
                }
                try await client.execute(uri: "/api/v1/runs/\(second)/retry", method: .post, headers: json) { response in
                    #expect(response.status == .accepted)
                }
                try await client.execute(uri: "/api/v1/health", method: .get) { response in
                    let health = try object(response)
                    #expect(health["database"] as? String == "reachable")
                    #expect(health["version"] as? String == TockVersion.current)
                }
            }
        }
    }

    @Test("errors have one JSON shape and the right status, never a 500 for bad input", arguments: [
        ("/api/v1/jobs/ghost", HTTPRequest.Method.get, 404, "not_found", "unknown job 'ghost'"),
        ("/api/v1/jobs/ghost/trigger", .post, 404, "not_found", "unknown job 'ghost'"),
        ("/api/v1/runs/abc", .get, 422, "invalid_id", "not a run id"),
        ("/api/v1/runs/999999", .get, 404, "not_found", "unknown run 999999"),
        ("/api/v1/jobs/known/runs?status=done", .get, 422, "invalid_status", "not a run status"),
        ("/api/v1/dead-letter?limit=0", .get, 422, "invalid_limit", "limit"),
        ("/api/v1/runs?before=x", .get, 422, "invalid_before", "not a run id"),
        ("/api/v1/schedule/preview?schedule=0%2025%20*%20*%20*", .get, 422, "invalid_schedule", "out of range"),
        ("/api/v1/schedule/preview?schedule=daily%20at%2006:00&timezone=Mars/Base", .get, 422, "invalid_timezone", "Mars/Base"),
        ("/api/v1/nothing-here", .get, 404, "not_found", "no such endpoint: GET /api/v1/nothing-here"),
    ])
    func errors(uri: String, method: HTTPRequest.Method, status: Int, code: String, fragment: String) async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "known", script: "x.sh"))
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                try await client.execute(uri: uri, method: method, headers: json) { response in
                    #expect(response.status.code == status, "\(body(response))")
                    let error = try #require(try object(response)["error"] as? [String: Any], "\(body(response))")
                    #expect(error["code"] as? String == code)
                    #expect((error["message"] as? String ?? "").contains(fragment), "\(body(response))")
                }
            }
        }
    }

    @Test("tokens: none is refused, read-only reads but cannot write, admin writes; a cancelled run cannot be cancelled twice")
    func auth() async throws {
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let access = try APIAccess.parse("reader-token-0123456789:read,admin-token-0123456789:admin")
            let app = Application(router: buildRouter(database: database, access: access))
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs", method: .get) { #expect($0.status == .unauthorized) }
                try await client.execute(uri: "/api/v1/jobs", method: .get, headers: [.authorization: "Bearer wrong"]) {
                    #expect($0.status == .unauthorized)
                }
                try await client.execute(uri: "/api/v1/jobs", method: .get,
                                         headers: [.authorization: "Bearer reader-token-0123456789"]) { #expect($0.status == .ok) }
                try await client.execute(uri: "/api/v1/jobs/job/trigger", method: .post,
                                         headers: [.authorization: "Bearer reader-token-0123456789", .contentType: "application/json"]) { response in
                    #expect(response.status == .forbidden)
                    let error = try object(response)["error"] as? [String: Any]
                    #expect(error?["code"] as? String == "forbidden")
                }
                let run = try await client.execute(uri: "/api/v1/jobs/job/trigger", method: .post,
                                                   headers: [.authorization: "Bearer admin-token-0123456789", .contentType: "application/json"]) { response in
                    #expect(response.status == .accepted)
                    return try #require(try object(response)["run_id"] as? Int)
                }
                try await client.execute(uri: "/api/v1/runs/\(run)/cancel", method: .post,
                                         headers: [.authorization: "Bearer admin-token-0123456789", .contentType: "application/json"]) { response in
                    let state = try object(response)["status"] as? String
                    #expect(state == "cancelled")
                }
                try await client.execute(uri: "/api/v1/runs/\(run)/cancel", method: .post,
                                         headers: [.authorization: "Bearer admin-token-0123456789", .contentType: "application/json"]) { response in
                    #expect(response.status == .conflict)
                }
            }
            #expect(throws: InputError.self) { try APIAccess.parse("short:admin") }
            #expect(throws: InputError.self) { try APIAccess.parse("long-enough-token-0123:root") }
            #expect(throws: TockError.self) {
                _ = try buildAPIServices(database: database, settings: settings, host: "0.0.0.0", port: 0, access: APIAccess(),
                                         logger: TestDatabase.logger)
            }
        }
    }

    @Test("limits over HTTP: a job's max_running and rate, a pool's through PUT /pools/NAME (admin only); bad ones get 422")
    func limits() async throws {
        try await TestDatabase.withFresh { database, _ in
            let access = try APIAccess.parse("reader-token-0123456789:read,admin-token-0123456789:admin")
            let app = Application(router: buildRouter(database: database, access: access))
            let admin: HTTPFields = [.authorization: "Bearer admin-token-0123456789", .contentType: "application/json"]
            let reader: HTTPFields = [.authorization: "Bearer reader-token-0123456789", .contentType: "application/json"]
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/jobs", method: .post, headers: admin, body: ByteBuffer(string: """
                    {"name": "extract", "script": "x.sh", "pool": "etl", "max_running": 2, "rate": "10/1m"}
                    """)) { response in
                    #expect(response.status == .created)
                    let job = try object(response)
                    #expect(job["max_running"] as? Int == 2 && job["rate"] as? String == "10/1m")
                }
                try await client.execute(uri: "/api/v1/jobs/extract", method: .put, headers: admin,
                                         body: ByteBuffer(string: #"{"max_running": null, "rate": "5/30s"}"#)) { response in
                    let job = try object(response)
                    #expect(job["max_running"] == nil && job["rate"] as? String == "5/30s")
                }
                try await client.execute(uri: "/api/v1/pools/etl", method: .put, headers: reader,
                                         body: ByteBuffer(string: #"{"max_running": 4}"#)) { #expect($0.status == .forbidden) }
                try await client.execute(uri: "/api/v1/pools/etl", method: .put, headers: admin,
                                         body: ByteBuffer(string: #"{"max_running": 4, "rate": "100/1h"}"#)) { response in
                    #expect(response.status == .ok)
                    let pool = try object(response)
                    #expect(pool["pool"] as? String == "etl" && pool["max_running"] as? Int == 4 && pool["rate"] as? String == "100/1h")
                }
                for (body, field) in [(#"{"max_running": 0}"#, "max_running"), (#"{"rate": "lots"}"#, "rate"),
                                      (#"{"burst": 3}"#, "burst"), (#"{"rate": 10}"#, "rate")] {
                    try await client.execute(uri: "/api/v1/pools/etl", method: .put, headers: admin,
                                             body: ByteBuffer(string: body)) { response in
                        #expect(response.status == .unprocessableContent, "\(body)")
                        let error = try object(response)["error"] as? [String: Any]
                        #expect(error?["field"] as? String == field, "\(body): \(String(describing: error))")
                    }
                }
                try await client.execute(uri: "/api/v1/pools/no%20way", method: .put, headers: admin,
                                         body: ByteBuffer(string: #"{"max_running": 1}"#)) { #expect($0.status.code / 100 == 4) }
                try await client.execute(uri: "/api/v1/pools", method: .get, headers: reader) { response in
                    let pools = try #require(try JSONSerialization.jsonObject(with: Data(body(response).utf8)) as? [[String: Any]])
                    #expect(pools.map { $0["pool"] as? String } == ["etl"])
                    #expect(pools.first?["max_running"] as? Int == 4 && pools.first?["jobs"] as? Int == 1)
                }
            }
        }
    }

    @Test("fleet defaults over HTTP: GET and PUT /config (admin, all or none); a job shows what it inherits")
    func config() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let access = try APIAccess.parse("reader-token-0123456789:read,admin-token-0123456789:admin")
            let app = Application(router: buildRouter(database: database, access: access))
            let admin: HTTPFields = [.authorization: "Bearer admin-token-0123456789", .contentType: "application/json"]
            let reader: HTTPFields = [.authorization: "Bearer reader-token-0123456789", .contentType: "application/json"]
            @Sendable func settings(_ response: TestResponse) throws -> [String: String] {
                let list = try #require(try JSONSerialization.jsonObject(with: Data(body(response).utf8)) as? [[String: Any]])
                return Dictionary(uniqueKeysWithValues: list.compactMap { item in
                    (item["key"] as? String).map { ($0, item["value"] as? String ?? "") } })
            }
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/config", method: .get, headers: reader) { response in
                    let now = try settings(response)
                    #expect(now["max_attempts"] == "1")
                }
                try await client.execute(uri: "/api/v1/config", method: .put, headers: reader,
                                         body: ByteBuffer(string: #"{"max_attempts": 3}"#)) { #expect($0.status == .forbidden) }
                try await client.execute(uri: "/api/v1/config", method: .put, headers: admin,
                                         body: ByteBuffer(string: #"{"max_attempts": 3, "timeout": "2h"}"#)) { response in
                    #expect(response.status == .ok)
                    let now = try settings(response)
                    #expect(now["max_attempts"] == "3" && now["timeout"] == "2h")
                }
                for (json, field) in [(#"{"max_attempts": 4, "timeout": "never"}"#, "timeout"), (#"{"colour": "blue"}"#, "key"),
                                      (#"{"max_attempts": [3]}"#, "max_attempts"), (#"{}"#, "body")] {
                    try await client.execute(uri: "/api/v1/config", method: .put, headers: admin, body: ByteBuffer(string: json)) { response in
                        #expect(response.status == .unprocessableContent, "\(json)")
                        let error = try object(response)["error"] as? [String: Any]
                        #expect(error?["field"] as? String == field, "\(json): \(String(describing: error))")
                    }
                }
                try await client.execute(uri: "/api/v1/jobs/job", method: .get, headers: reader) { response in
                    let job = try object(response)
                    #expect(job["max_attempts"] as? Int == 3 && job["timeout_seconds"] as? Double == 7200)
                    #expect((job["inherited"] as? [String])?.contains("max_attempts") == true)
                }
            }
        }
    }

    @Test("a trigger retried with its Idempotency-Key answers the first run, says so, and enqueues nothing; bad keys get 422")
    func idempotentTrigger() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "report", script: "x.sh"))
            let app = Application(router: buildRouter(database: database))
            let keyName = HTTPFields.Element.Name("Idempotency-Key")!
            try await app.test(.router) { client in
                func trigger(_ keys: [String]) async throws -> (status: HTTPResponse.Status, replayed: String?, body: [String: Any]) {
                    var headers = json
                    for key in keys { headers.append(HTTPFields.Element(name: keyName, value: key)) }
                    return try await client.execute(uri: "/api/v1/jobs/report/trigger", method: .post, headers: headers) { response in
                        (response.status, response.headers[HTTPFields.Element.Name("Idempotent-Replayed")!], (try? object(response)) ?? [:])
                    }
                }
                let first = try await trigger(["3f9c-click"])
                #expect(first.status == .accepted && first.replayed == nil)
                let run = try #require(first.body["run_id"] as? Int)
                // The client retried (its answer was lost): the same run, as it is now, and nothing enqueued.
                _ = try await database.cancel(Int64(run))
                let again = try await trigger(["3f9c-click"])
                #expect(again.status == .ok && again.replayed == "true")
                #expect(again.body["run_id"] as? Int == run && again.body["status"] as? String == "cancelled")
                #expect(again.body["replayed"] as? Bool == true)
                #expect(try await TriggerCount.runs(database) == 0)
                // Another key, or none, enqueues.
                #expect(try await trigger(["other"]).status == .accepted)
                #expect(try await trigger([]).status == .accepted)
                for keys in [[String(repeating: "k", count: 201)], ["a", "b"], [""]] {
                    let refused = try await trigger(keys)
                    #expect(refused.status == .unprocessableContent, "\(keys.map(\.count))")
                    #expect((refused.body["error"] as? [String: Any])?["code"] as? String == "invalid_key", "\(refused.body)")
                }
                #expect(try await TriggerCount.runs(database) == 2)
            }
        }
    }

    @Test("a trigger's body gives parameters: declared ones run with them; anything else is refused with 4xx naming it, and nothing is enqueued")
    func triggerWithParameters() async throws {
        try await TestDatabase.withFresh { database, _ in
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                func send(_ method: HTTPRequest.Method, _ uri: String, _ text: String) async throws -> (Int, [String: Any]) {
                    try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"],
                                             body: ByteBuffer(string: text)) { response in
                        (Int(response.status.code), (try? object(response)) ?? [:])
                    }
                }
                func error(_ result: (Int, [String: Any])) -> String {
                    let detail = result.1["error"] as? [String: Any]
                    return "\(result.0) \(detail?["code"] as? String ?? "-") \(detail?["message"] as? String ?? "")"
                }
                let (created, job) = try await send(.post, "/api/v1/jobs", """
                    {"name": "deploy", "script": "d.sh", "args": ["{{env}}"], "description": "Deploys.",
                     "params": [{"name": "env", "choices": ["staging", "prod"], "default": "staging"},
                                {"name": "ticket", "required": true}]}
                    """)
                #expect(created == 201, "\(job)")
                #expect(job["description"] as? String == "Deploys." && (job["params"] as? [[String: Any]])?.count == 2, "\(job)")

                let (accepted, action) = try await send(.post, "/api/v1/jobs/deploy/trigger", #"{"params": {"ticket": "OPS-1", "env": "prod"}}"#)
                #expect(accepted == 202, "\(action)")
                let run = try await database.run(Int64(try #require(action["run_id"] as? Int)), withOutput: false)
                #expect(run.params == ["env": "prod", "ticket": "OPS-1"])
                let (read, shown) = try await send(.get, "/api/v1/runs/\(run.id)", "")
                #expect(read == 200 && (shown["params"] as? [String: String]) == ["env": "prod", "ticket": "OPS-1"], "\(shown)")

                let refused: [(body: String, says: String)] = [
                    (#"{"params": {"ticket": "OPS-1", "env": "dev"}}"#, "422 invalid_params params: parameter env: 'dev' is not allowed"),
                    (#"{"params": {"ticket": "OPS-1", "region": "eu"}}"#, "422 invalid_params params: region is not a parameter of this job"),
                    (#"{"params": {}}"#, "422 invalid_params params: parameter ticket is required"),
                    (#"{"params": ["OPS-1"]}"#, "422 invalid_params params: expected a JSON object"),
                    // A body Tock does not understand is refused, not ignored.
                    (#"{"parameters": {"ticket": "OPS-1"}}"#, "422 unknown_field parameters: unknown field(s) parameters; a trigger takes params"),
                    (#"{"params": {"ticket": "OPS-1"}, "priority": 99}"#, "422 unknown_field priority"),
                    (#"["OPS-1"]"#, "400 malformed_json the request body must be a JSON object"),
                    ("{not json", "400 malformed_json the request body must be a JSON object"),
                    ("{\"params\": {\"ticket\": \"\(String(repeating: "x", count: 70_000))\"}}", "413 body_too_large"),
                ]
                for (body, says) in refused {
                    let result = try await send(.post, "/api/v1/jobs/deploy/trigger", body)
                    #expect(error(result).hasPrefix(says), "\(body.prefix(80)): \(error(result))")
                }
                // An empty body takes the defaults, which a required parameter has none of.
                #expect(error(try await send(.post, "/api/v1/jobs/deploy/trigger", "")).hasPrefix("422 invalid_params params: parameter ticket is required"))
                #expect(try await TriggerCount.runs(database) == 1)
            }
        }
    }

    @Test("create, edit, pause, resume and delete a job over HTTP; bad bodies get 400/409/413/422 and change nothing")
    func jobWrites() async throws {
        try await TestDatabase.withFresh { database, _ in
            let app = Application(router: buildRouter(database: database, maxBodyBytes: 1024))
            try await app.test(.router) { client in
                func send(_ method: HTTPRequest.Method, _ uri: String, _ text: String) async throws -> (Int, [String: Any]) {
                    try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"],
                                             body: ByteBuffer(string: text)) { response in
                        (Int(response.status.code), (try? object(response)) ?? [:])
                    }
                }
                func errorCode(_ result: (Int, [String: Any])) -> String? {
                    (result.1["error"] as? [String: Any])?["code"] as? String
                }
                let (created, job) = try await send(.post, "/api/v1/jobs", """
                    {"name": "report", "script": "report.sh", "args": ["--full"], "schedule": "daily at 06:00",
                     "timezone": "Asia/Hong_Kong", "timeout_seconds": 90, "max_attempts": 3}
                    """)
                #expect(created == 201)
                #expect(job["schedule_description"] as? String == "daily at 06:00")
                #expect(job["timeout_seconds"] as? Double == 90)
                #expect(job["next_run_at"] != nil)

                let duplicate = try await send(.post, "/api/v1/jobs", #"{"name": "report", "script": "x.sh"}"#)
                #expect(duplicate.0 == 409)
                let malformed = try await send(.post, "/api/v1/jobs", #"{"name": "report""#)
                #expect(malformed.0 == 400 && errorCode(malformed) == "malformed_json")
                let array = try await send(.post, "/api/v1/jobs", "[1, 2]")
                #expect(array.0 == 400 && errorCode(array) == "malformed_json")
                let unknown = try await send(.post, "/api/v1/jobs", #"{"name": "b", "script": "x.sh", "colour": "red"}"#)
                #expect(unknown.0 == 422 && errorCode(unknown) == "unknown_field")
                let badType = try await send(.post, "/api/v1/jobs", #"{"name": "b", "script": "x.sh", "priority": "high"}"#)
                #expect(badType.0 == 422 && errorCode(badType) == "invalid_priority")
                let badCron = try await send(.post, "/api/v1/jobs", #"{"name": "b", "script": "x.sh", "schedule": "0 0 32 * *"}"#)
                #expect(badCron.0 == 422 && errorCode(badCron) == "invalid_schedule")
                #expect((badCron.1["error"] as? [String: Any])?["field"] as? String == "schedule.cron")
                let badZone = try await send(.post, "/api/v1/jobs", #"{"name": "b", "script": "x.sh", "timezone": "Mars/Base"}"#)
                #expect(badZone.0 == 422 && errorCode(badZone) == "invalid_timezone")
                let outside = try await send(.post, "/api/v1/jobs", #"{"name": "b", "script": "../etc/passwd"}"#)
                #expect(outside.0 == 422 && errorCode(outside) == "invalid_script")
                let huge = try await send(.post, "/api/v1/jobs", #"{"name": "b", "script": "x.sh", "args": [""# + String(repeating: "x", count: 2000) + #""]}"#)
                #expect(huge.0 == 413 && errorCode(huge) == "body_too_large")
                #expect(try await database.jobs().map(\.name) == ["report"], "no half-written job")

                let (edited, changed) = try await send(.put, "/api/v1/jobs/report", #"{"schedule": "every 5m", "priority": 80}"#)
                #expect(edited == 200)
                #expect(changed["schedule"] as? String == "every 5m")
                #expect(changed["priority"] as? Int == 80)
                #expect(changed["timezone"] as? String == "Asia/Hong_Kong", "absent fields keep their value")
                let badEdit = try await send(.put, "/api/v1/jobs/report", #"{"max_attempts": 0}"#)
                #expect(badEdit.0 == 422 && errorCode(badEdit) == "invalid_max_attempts")
                #expect(try await database.job("report").maxAttempts == 3)

                let paused = try await send(.post, "/api/v1/jobs/report/pause", "")
                #expect(paused.1["state"] as? String == "paused" && paused.1["next_run_at"] == nil)
                let resumed = try await send(.post, "/api/v1/jobs/report/resume", "")
                #expect(resumed.1["state"] as? String == "enabled" && resumed.1["next_run_at"] != nil)
                let deleted = try await send(.delete, "/api/v1/jobs/report", "")
                #expect(deleted.0 == 200 && deleted.1["deleted"] as? Bool == true)
                let gone = try await send(.get, "/api/v1/jobs/report", "")
                #expect(gone.0 == 404)
            }
        }
    }

    @Test("run lists page newest first with a Link to the next page; stats and health report the queue and liveness")
    func pagingStatsHealth() async throws {
        try await TestDatabase.withFresh { database, _ in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            var created: [Int64] = []
            for _ in 0..<5 { created.append(try await database.runNow("job")) }
            let ids = created
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                let next = try await client.execute(uri: "/api/v1/jobs/job/runs?limit=2", method: .get) { response in
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(runs.map(\.id) == [ids[4], ids[3]])
                    return response.headers[HTTPFields.Element.Name("Link")!]
                }
                #expect(next == "</api/v1/jobs/job/runs?limit=2&before=\(ids[3])>; rel=\"next\"")
                try await client.execute(uri: "/api/v1/runs?limit=2&before=\(ids[3])", method: .get) { response in
                    let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(body(response).utf8))
                    #expect(runs.map(\.id) == [ids[2], ids[1]])
                }
                try await client.execute(uri: "/api/v1/runs?limit=10", method: .get) { response in
                    #expect(response.headers[HTTPFields.Element.Name("Link")!] == nil, "a short page is the last")
                }
                try await client.execute(uri: "/api/v1/stats", method: .get) { response in
                    let stats = try object(response)
                    let runs24h = (stats["runs_24h"] as? [String: Any]) ?? [:]
                    #expect(runs24h["pending"] as? Int == 5)
                    #expect(runs24h.keys.sorted() == ["cancelled", "dead", "failed", "pending", "running", "succeeded", "timed_out"])
                    #expect(runs24h.filter { $0.key != "pending" }.allSatisfy { $0.value as? Int == 0 }, "\(runs24h)")
                    #expect((stats["queue"] as? [String: Any])?["ready"] as? Int == 5)
                    #expect((stats["queue"] as? [String: Any])?["capped"] as? Bool == false)
                    #expect(stats["jobs"] == nil, "per-job figures are /jobs/{job}/stats")
                }
                try await client.execute(uri: "/api/v1/health", method: .get) { response in
                    let health = try object(response)
                    #expect(health["status"] as? String == "degraded", "no worker or scheduler is running")
                    #expect(health["migrations_current"] as? Bool == true)
                    #expect(health["schedulers_alive"] as? Int == 0)
                }
            }
        }
    }

    @Test("the job list pages in name order with a Link to the next page and searches names; one job's stats")
    func jobPagesAndStats() async throws {
        try await TestDatabase.withFresh { database, _ in
            for name in ["backup-a", "backup-b", "backup_c", "report", "sync"] {
                _ = try await database.createJob(JobDefinition(name: name, script: "x.sh"))
            }
            let worker = try await database.registerWorker(host: "t", pid: 1, concurrency: 2, scriptsDirectory: nil, version: nil)
            _ = try await database.runNow("report")
            _ = try await database.runNow("report")
            let claimed = try await database.claimRuns(worker: worker, max: 2)
            _ = try await database.finishRun(claimed[0].runId, worker: worker, outcome: RunOutcome(status: .succeeded, exitCode: 0))
            _ = try await database.finishRun(claimed[1].runId, worker: worker, outcome: RunOutcome(status: .failed, exitCode: 3))
            let app = Application(router: buildRouter(database: database))
            try await app.test(.router) { client in
                func names(_ response: TestResponse) throws -> [String] {
                    try TockJSON.decoder().decode([JobInfo].self, from: Data(body(response).utf8)).map(\.name)
                }
                let link = Self.linkName
                let next = try await client.execute(uri: "/api/v1/jobs?limit=2", method: .get) { response in
                    let got = try names(response)
                    #expect(got == ["backup-a", "backup-b"])
                    return response.headers[link]
                }
                #expect(next == "</api/v1/jobs?limit=2&after=backup-b>; rel=\"next\"")
                try await client.execute(uri: "/api/v1/jobs?limit=2&after=backup-b", method: .get) { response in
                    let got = try names(response)
                    #expect(got == ["backup_c", "report"])
                }
                try await client.execute(uri: "/api/v1/jobs?after=report", method: .get) { response in
                    let got = try names(response)
                    #expect(got == ["sync"])
                    #expect(response.headers[link] == nil, "a short page is the last")
                }
                // Case-insensitive, and % and _ are literal characters, not patterns.
                try await client.execute(uri: "/api/v1/jobs?q=BACKUP", method: .get) { response in
                    let got = try names(response)
                    #expect(got == ["backup-a", "backup-b", "backup_c"])
                }
                try await client.execute(uri: "/api/v1/jobs?q=p_", method: .get) { response in
                    let got = try names(response)
                    #expect(got == ["backup_c"])
                }
                try await client.execute(uri: "/api/v1/jobs?q=%25", method: .get) { response in
                    let got = try names(response)
                    #expect(got == [])
                }
                try await client.execute(uri: "/api/v1/jobs?limit=0", method: .get) { response in
                    #expect(response.status == .unprocessableContent)
                    #expect(body(response).contains("limit"))
                }
                try await client.execute(uri: "/api/v1/jobs/report/stats", method: .get) { response in
                    #expect(response.status == .ok)
                    let stats = try TockJSON.decoder().decode([JobStats].self, from: Data(body(response).utf8))
                    #expect(stats.map(\.period) == ["24h", "7d"])
                    #expect(stats.first?.runs == 2 && stats.first?.succeeded == 1 && stats.first?.failed == 1)
                    #expect(stats.first?.successRate == 0.5)
                }
                try await client.execute(uri: "/api/v1/jobs/nope/stats", method: .get) { response in
                    #expect(response.status == .notFound)
                }
            }
        }
    }

    static let linkName = HTTPFields.Element.Name("Link")!

    @Test("the portal and the OpenAPI document are served, and every API route is in the document")
    func portalAndOpenAPI() async throws {
        try await TestDatabase.withFresh { database, _ in
            let router = buildRouter(database: database)
            let app = Application(router: router)
            let document = try await app.test(.router) { client in
                try await client.execute(uri: "/", method: .get) { response in
                    #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                    #expect(body(response).contains("/portal/app.js"))
                }
                try await client.execute(uri: "/portal/app.js", method: .get) { response in
                    #expect(response.headers[.contentType] == "text/javascript; charset=utf-8")
                    #expect(body(response).contains("EventSource"))
                }
                try await client.execute(uri: "/portal/secret.txt", method: .get) { #expect($0.status == .notFound) }
                return try await client.execute(uri: "/api/v1/openapi.json", method: .get) { try object($0) }
            }
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let routes = router.routes.filter { "\($0.path)".hasPrefix("/api/v1") }
            #expect(routes.count >= 20)
            for route in routes {
                let path = "\(route.path)".split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
                let key = "/" + path.joined(separator: "/")
                #expect(paths[key]?[route.method.rawValue.lowercased()] != nil, "\(route.method) \(key) is not in openapi.json")
            }
        }
    }

    @Test("the event hub relays NOTIFY tock_events to every subscriber, with a resync after it connects")
    func events() async throws {
        try await TestDatabase.withFresh { database, settings in
            _ = try await database.createJob(JobDefinition(name: "job", script: "x.sh"))
            let hub = EventHub(settings: settings, logger: TestDatabase.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await hub.run() }
                let (id, messages) = hub.subscribe()
                var iterator = messages.makeAsyncIterator()
                #expect(await iterator.next() == .event(#"{"type": "resync"}"#))
                let run = try await database.runNow("job")
                let event = await iterator.next()
                guard case .event(let payload) = event else { Issue.record("no event: \(String(describing: event))"); return }
                let decoded = try #require(try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any])
                #expect(decoded["type"] as? String == "runs")
                #expect(decoded["runs"] as? [Int] == [Int(run)])
                hub.unsubscribe(id)
                #expect(hub.subscriberCount == 0)
                group.cancelAll()
            }
        }
    }
}

enum TriggerCount {
    /// Runs in flight.
    static func runs(_ database: Database) async throws -> Int {
        try await database.client.query("SELECT count(*)::int FROM tock.runs").decode(Int.self).all().first ?? -1
    }
}
