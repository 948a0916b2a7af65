import Foundation
import Testing
import TockCore
import TockTesting

/// The built `tock` binary: TOCK_BIN (ops/test sets it), else the debug build next to the package.
let tockBinary: String = ProcessInfo.processInfo.environment["TOCK_BIN"] ?? TestDatabase.packageRoot + "/.build/debug/tock"

struct Invocation {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `tock` with `arguments` against `settings`, from `directory`, on a thread of its own: a waitpid on the
/// cooperative pool (two threads here) stalls every other test in the process while the command runs.
func tock(_ arguments: [String], settings: ConnectionSettings, directory: String) async throws -> Invocation {
    let result = try await runProgramOffPool(tockBinary, arguments, environment: ["DATABASE_URL": settings.url(), "PATH": "/usr/bin:/bin", "TZ": "UTC"],
                                directory: directory)
    return Invocation(status: result.status, stdout: result.stdout, stderr: result.stderr)
}

@Suite("the tock binary, end to end")
struct CLITests {
    @Test("job add, job run, run show prints the script's output, with a real `tock worker` process")
    func addRunShow() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: tockBinary), "build tock first: \(tockBinary)")
        let directory = try makeScriptsDirectory(["scripts/report.sh": "#!/bin/sh\necho \"report for $1\"\necho \"warning\" >&2\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()

        let worker = try TockProcess(["worker", "--concurrency", "2"], settings: settings, directory: directory,
                                     environment: ["TOCK_LOG_LEVEL": "warning"])
        defer { if worker.isRunning { worker.signal(SIGKILL) } }

        let add = try await tock(["job", "add", "nightly", "--script", "report.sh", "--arg", "Hong Kong",
                            "--schedule", "daily at 06:00", "--timezone", "Asia/Hong_Kong"], settings: settings, directory: directory)
        #expect(add.status == 0, "\(add.stderr)")
        #expect(add.stdout.contains("created job nightly"))
        #expect(add.stdout.contains("daily at 06:00"))
        #expect(add.stdout.contains(" 22:00:00 "), "06:00 in Hong Kong is 22:00 UTC: \(add.stdout)")

        let run = try await tock(["job", "run", "nightly", "--json"], settings: settings, directory: directory)
        #expect(run.status == 0, "\(run.stderr)")
        let runID = try #require((try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])?["run_id"] as? Int)

        #expect(try await eventually(timeout: .seconds(60)) {
            try await tock(["run", "show", "\(runID)"], settings: settings, directory: directory).stdout.contains("status:     succeeded")
        })
        let show = try await tock(["run", "show", "\(runID)"], settings: settings, directory: directory)
        #expect(show.stdout.contains("report for Hong Kong\nwarning\n"), "\(show.stdout)")
        #expect(show.stdout.contains("(exit 0)"))

        let list = try await tock(["job", "list"], settings: settings, directory: directory)
        #expect(list.stdout.contains("nightly"))
        #expect(list.stdout.contains("succeeded"))

        let runs = try await tock(["runs", "--job", "nightly", "--status", "succeeded", "--json"], settings: settings, directory: directory)
        let decoded = try TockJSON.decoder().decode([RunInfo].self, from: Data(runs.stdout.utf8))
        #expect(decoded.map(\.id) == [Int64(runID)])

        // SIGTERM stops the worker cleanly and it says so in tock.workers.
        worker.signal(SIGTERM)
        #expect(try await worker.wait() == 0, "\(worker.log)")
        let workers = try await tock(["workers", "--json"], settings: settings, directory: directory)
        #expect(workers.stdout.contains("\"state\" : \"stopped\""), "\(workers.stdout)")
        #expect(workers.stdout.contains("\"version\" : \"\(TockVersion.current)\""), "\(workers.stdout)")
    }

    @Test("tock --version prints the version the worker registers with and the API reports")
    func version() async throws {
        let result = try await runProgramOffPool(tockBinary, ["--version"], environment: ["PATH": "/usr/bin:/bin"], directory: "/")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == TockVersion.current + "\n")
    }

    @Test("bad input: a clear message, a non-zero exit, and nothing written", arguments: [
        (["job", "add", "x", "--script", "../../etc/passwd"], Int32(2), "contains '..'"),
        (["job", "add", "x", "--script", "/bin/sh"], 2, "is absolute"),
        (["job", "add", "x", "--script", "a.sh", "--schedule", "0 0 32 * *"], 2, "field 3 (day of month) '32' is out of range 1-31"),
        (["job", "add", "x", "--script", "a.sh", "--timezone", "Mars/Olympus"], 2, "unknown time zone 'Mars/Olympus'"),
        (["job", "add", "x", "--script", "a.sh", "--schedule", "every 0s"], 2, "greater than zero"),
        (["job", "add", "x", "--script", "a.sh", "--timeout", "soon"], 2, "not a duration"),
        (["job", "add", "x", "--script", "a.sh", "--timeout", "31d"], 2, "30 days"),
        (["job", "add", "x", "--script", "a.sh", "--timeout", "178000000d"], 2, "longer than 10 years"),
        (["job", "add", "x", "--script", "a.sh", "--schedule", String(repeating: "1,", count: 300) + " * * * *"], 2, "at most 500"),
        (["job", "run", "ghost"], 3, "unknown job 'ghost'"),
        (["run", "show", "999999"], 3, "unknown run 999999"),
        (["runs", "--status", "done"], 2, "a status is pending, running"),
    ])
    func badInput(arguments: [String], status: Int32, message: String) async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        let result = try await tock(arguments, settings: settings, directory: directory)
        #expect(result.status == status, "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(!result.stderr.contains("Fatal error"))
        let list = try await tock(["job", "list", "--json"], settings: settings, directory: directory)
        #expect(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || list.stdout.contains("[]"), "\(list.stdout)")
    }

    @Test("a duplicate name is refused with exit 4; tock migrate is a no-op when current")
    func duplicateAndMigrate() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        #expect(try await tock(["job", "add", "x", "--script", "a.sh"], settings: settings, directory: directory).status == 0)
        let again = try await tock(["job", "add", "x", "--script", "a.sh"], settings: settings, directory: directory)
        #expect(again.status == 4)
        #expect(again.stderr.contains("a job named 'x' already exists"))
        let migrate = try await tock(["migrate"], settings: settings, directory: directory)
        #expect(migrate.stdout == "up to date\n", "\(migrate.stdout)\(migrate.stderr)")
    }

    @Test("a job's --pool runs on a worker whose --pools name it, never on one that serves other pools")
    func poolsEndToEnd() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\necho ran\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        #expect(try await tock(["job", "add", "x", "--script", "a.sh", "--pool", "etl"], settings: settings, directory: directory).status == 0)
        let show = try await tock(["job", "show", "x"], settings: settings, directory: directory)
        #expect(show.stdout.contains("pool:          etl"), "\(show.stdout)")
        let doctor = try await tock(["doctor"], settings: settings, directory: directory)
        #expect(doctor.stdout.contains("WARN  pools") && doctor.stdout.contains("no live worker serves etl (1 jobs, 0 runs waiting)"),
                "\(doctor.stdout)")
        // A worker of the default pool alone: the job's run stays waiting, and doctor says for which pool.
        let plain = try TockProcess(["worker", "--name", "plain"], settings: settings, directory: directory)
        defer { plain.signal(SIGKILL) }
        let queued = try await tock(["job", "run", "x", "--json"], settings: settings, directory: directory)
        let first = try TockJSON.decoder().decode(TriggeredRun.self, from: Data(queued.stdout.utf8)).runId
        #expect(try await eventually {
            try await tock(["doctor"], settings: settings, directory: directory).stdout.contains("no live worker serves etl (1 jobs, 1 runs waiting)")
        })
        #expect(try await tock(["run", "show", "\(first)"], settings: settings, directory: directory).stdout.contains("status:     pending"))
        // Then one that serves etl (from TOCK_POOLS): it runs the waiting run and the next ones.
        let etl = try TockProcess(["worker", "--name", "etl-box"], settings: settings, directory: directory,
                                  environment: ["TOCK_POOLS": "reports,etl"])
        defer { etl.signal(SIGKILL) }
        for _ in 0..<2 {
            let run = try await tock(["job", "run", "x", "--wait", "--wait-timeout", "30"], settings: settings, directory: directory)
            #expect(run.status == 0 && run.stdout == "ran\n", "\(run.stdout)\(run.stderr)\n\(etl.log)")
        }
        #expect(try await tock(["doctor"], settings: settings, directory: directory).stdout.contains("ok    pools"))
        let runs = try TockJSON.decoder().decode([RunInfo].self, from: Data(
            try await tock(["runs", "--job", "x", "--json"], settings: settings, directory: directory).stdout.utf8))
        #expect(runs.count == 3 && runs.allSatisfy { $0.workerName == "etl-box" }, "\(runs.map(\.workerName))")
        let bad = try TockProcess(["worker", "--pools", "etl,,x"], settings: settings, directory: directory)
        #expect(try await bad.wait() != 0 && bad.log.contains("pools"), "\(bad.log)")
    }

    @Test("limits from the command line: job add and edit --max-running and --rate, pool set and list; bad ones exit 2")
    func limitsFromTheCommandLine() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        func run(_ arguments: [String]) async throws -> Invocation { try await tock(arguments, settings: settings, directory: directory) }
        #expect(try await run(["job", "add", "x", "--script", "a.sh", "--pool", "etl", "--max-running", "2", "--rate", "10/1m"]).status == 0)
        #expect(try await run(["job", "show", "x"]).stdout.contains("limits:        max running 2, rate 10/1m"))
        #expect(try await run(["job", "edit", "x", "--max-running", "none", "--rate", "3/30s"]).status == 0)
        #expect(try await run(["job", "show", "x"]).stdout.contains("limits:        max running no limit, rate 3/30s"))
        let set = try await run(["pool", "set", "etl", "--max-running", "4", "--rate", "100/1h"])
        #expect(set.status == 0 && set.stdout == "pool etl: max running 4, rate 100/1h\n", "\(set)")
        let list = try await run(["pool"])
        #expect(list.stdout.contains("etl") && list.stdout.contains("100/1h") && list.stdout.contains("NONE"), "\(list.stdout)")
        for (arguments, message) in [(["pool", "set", "etl", "--max-running", "many"], "max_running: 'many' is not a whole number"),
                                     (["pool", "set", "etl", "--rate", "1/2y"], "rate: '1/2y' is not a rate"),
                                     (["pool", "set", "etl"], "nothing to set"),
                                     (["job", "edit", "x", "--max-running", "0"], "max_running: 0 is out of range")] {
            let refused = try await run(arguments)
            #expect(refused.status == 2 && refused.stderr.contains(message), "\(arguments): \(refused)")
        }
        let cleared = try await run(["pool", "set", "etl", "--max-running", "none", "--rate", "none"])
        #expect(cleared.stdout == "pool etl: max running no limit, rate no limit\n", "\(cleared)")
    }

    @Test("tock config shows and sets the fleet's defaults; a job shows what it inherits, and --inherit takes one back")
    func fleetDefaults() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        func run(_ arguments: [String]) async throws -> Invocation { try await tock(arguments, settings: settings, directory: directory) }
        #expect(try await run(["job", "add", "x", "--script", "a.sh", "--timeout", "5m"]).status == 0)
        let set = try await run(["config", "set", "max_attempts", "3"])
        #expect(set.status == 0 && set.stdout == "max_attempts = 3\n", "\(set)")
        #expect(try await run(["config", "set", "timeout", "2h"]).status == 0)
        let show = try await run(["config"])
        #expect(show.stdout.contains("max_attempts       3") && show.stdout.contains("timeout            2h"), "\(show.stdout)")
        var job = try await run(["job", "show", "x"])
        #expect(job.stdout.contains("timeout:       5m") && job.stdout.contains("max attempts:  3"), "\(job.stdout)")
        #expect(job.stdout.contains("inherited:     max_attempts, overlap, pool, retry_base, retry_cap ("), "\(job.stdout)")
        #expect(try await run(["job", "edit", "x", "--inherit", "timeout"]).status == 0)
        job = try await run(["job", "show", "x"])
        #expect(job.stdout.contains("timeout:       2h"), "\(job.stdout)")
        for (arguments, message) in [(["config", "set", "colour", "blue"], "unknown setting 'colour'"),
                                     (["config", "set", "timeout", "soon"], "timeout: 'soon' is not a duration"),
                                     (["job", "edit", "x", "--inherit", "priority"], "inherit: 'priority' has no fleet default")] {
            let refused = try await run(arguments)
            #expect(refused.status == 2 && refused.stderr.contains(message), "\(arguments): \(refused)")
        }
    }

    @Test("job run --key, run twice (a retried command), enqueues one run and says the second found it; a bad key exits 2")
    func keyedRun() async throws {
        let directory = try makeScriptsDirectory(["scripts/a.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        #expect(try await tock(["job", "add", "x", "--script", "a.sh"], settings: settings, directory: directory).status == 0)
        let first = try await tock(["job", "run", "x", "--key", "deploy-42", "--json"], settings: settings, directory: directory)
        #expect(first.status == 0, "\(first.stderr)")
        let answer = try TockJSON.decoder().decode(TriggeredRun.self, from: Data(first.stdout.utf8))
        #expect(!answer.replayed)
        let again = try await tock(["job", "run", "x", "--key", "deploy-42"], settings: settings, directory: directory)
        #expect(again.status == 0 && again.stdout.contains("run \(answer.runId) was already started by key 'deploy-42'"), "\(again.stdout)")
        let runs = try await tock(["runs", "--job", "x", "--json"], settings: settings, directory: directory)
        #expect(try TockJSON.decoder().decode([RunInfo].self, from: Data(runs.stdout.utf8)).map(\.id) == [answer.runId])
        let bad = try await tock(["job", "run", "x", "--key", String(repeating: "k", count: 201)], settings: settings, directory: directory)
        #expect(bad.status == 2 && bad.stderr.contains("key: a key has 1 to 200 characters"), "\(bad.status) \(bad.stderr)")
    }
}

@Suite("parameters from the command line")
struct ParameterCLITests {
    @Test("job add --param-def, job run --param --wait, job show and run show; bad values exit non-zero naming the parameter")
    func parametersEndToEnd() async throws {
        let directory = try makeScriptsDirectory(["scripts/deploy.sh": "#!/bin/sh\necho \"deploying $1 to $TOCK_PARAM_ENV\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let settings = try await TestDatabase.create()
        func run(_ arguments: [String]) async throws -> Invocation { try await tock(arguments, settings: settings, directory: directory) }
        let add = try await run(["job", "add", "deploy", "--script", "deploy.sh", "--arg", "{{ticket}}",
                                 "--param-def", "env:choice=staging,prod:default=staging",
                                 "--param-def", "ticket:required:pattern=[A-Z]+-[0-9]+(:[a-z]+)?",
                                 "--description", "Deploys the app; ask #ops first."])
        #expect(add.status == 0, "\(add.stderr)")
        let shown = try await run(["job", "show", "deploy"]).stdout
        #expect(shown.contains("parameters:    env (one of staging, prod; default staging)")
                && shown.contains("ticket (required; matching [A-Z]+-[0-9]+(:[a-z]+)?)")
                && shown.contains("Deploys the app; ask #ops first."), "\(shown)")

        let worker = try TockProcess(["worker"], settings: settings, directory: directory, environment: ["TOCK_LOG_LEVEL": "warning"])
        defer { if worker.isRunning { worker.signal(SIGKILL) } }
        let ran = try await run(["job", "run", "deploy", "--param", "ticket=OPS-42:hot", "--param", "env=prod", "--wait",
                                 "--wait-timeout", "30", "--json"])
        #expect(ran.status == 0, "\(ran.stdout)\(ran.stderr)\n\(worker.log)")
        let info = try TockJSON.decoder().decode(RunInfo.self, from: Data(ran.stdout.utf8))
        #expect(info.output == "deploying OPS-42:hot to prod\n" && info.params == ["env": "prod", "ticket": "OPS-42:hot"])
        #expect(try await run(["run", "show", "\(info.id)"]).stdout.contains("parameters: env=prod ticket=OPS-42:hot"))

        let refused = try await run(["job", "run", "deploy", "--param", "ticket=OPS-1", "--param", "env=dev"])
        #expect(refused.status != 0 && refused.stderr.contains("parameter env: 'dev' is not allowed (one of staging, prod)"),
                "\(refused.stderr)")
        let malformed = try await run(["job", "run", "deploy", "--param", "ticket"])
        #expect(malformed.status != 0 && malformed.stderr.contains("'ticket' is not name=value"), "\(malformed.stderr)")
        let badSpec = try await run(["job", "edit", "deploy", "--param-def", "env:colour=red"])
        #expect(badSpec.status != 0 && badSpec.stderr.contains("'colour=red' is not an option of a parameter"), "\(badSpec.stderr)")
        // Edits replace the declarations, or remove them; the description goes with "".
        #expect(try await run(["job", "edit", "deploy", "--clear-params", "--arg", "x", "--description", ""]).status == 0)
        struct Shown: Decodable { var job: JobInfo }
        let plain = try TockJSON.decoder().decode(Shown.self, from: Data(try await run(["job", "show", "deploy", "--json"]).stdout.utf8)).job
        #expect(plain.params == nil && plain.description == nil && plain.args == ["x"])
    }
}

@Suite("environment and secrets from the command line")
struct SecretCLITests {
    @Test("job add --env --secret, a worker with TOCK_SECRETS_FILE masks the value; one whose file others may read refuses to start")
    func secretsEndToEnd() async throws {
        let directory = try makeScriptsDirectory(["scripts/use.sh": "#!/bin/sh\necho \"$MODE $API_TOKEN\"\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secrets = directory + "/secrets"
        let value = "s3cr3t-\(UUID().uuidString)"
        try "API_TOKEN:use=\(value)\n".write(toFile: secrets, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: secrets)
        let settings = try await TestDatabase.create()
        func run(_ arguments: [String]) async throws -> Invocation { try await tock(arguments, settings: settings, directory: directory) }
        #expect(try await run(["job", "add", "use", "--script", "use.sh", "--env", "MODE=fast", "--secret", "API_TOKEN"]).status == 0)
        let shown = try await run(["job", "show", "use"]).stdout
        #expect(shown.contains("env:           MODE=fast") && shown.contains("secrets:       API_TOKEN"), "\(shown)")

        let refused = try TockProcess(["worker"], settings: settings, directory: directory, environment: ["TOCK_SECRETS_FILE": secrets])
        #expect(try await refused.wait() != 0 && refused.log.contains("chmod 600 \(secrets)"), "\(refused.log)")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secrets)
        let worker = try TockProcess(["worker"], settings: settings, directory: directory,
                                     environment: ["TOCK_SECRETS_FILE": secrets, "TOCK_LOG_LEVEL": "debug"])
        defer { if worker.isRunning { worker.signal(SIGKILL) } }
        let ran = try await run(["job", "run", "use", "--wait", "--wait-timeout", "30"])
        #expect(ran.status == 0 && ran.stdout == "fast ***\n", "\(ran.stdout)\(ran.stderr)\n\(worker.log)")
        let json = try await run(["run", "show", "1", "--json"]).stdout + (try await run(["job", "show", "use", "--json"]).stdout)
        #expect(!json.contains(value) && !worker.log.contains(value), "the secret's value got out")
    }
}

@Suite("HTTP jobs from the command line")
struct HTTPJobCLITests {
    @Test("job add --http --header --body @file --expect, a worker with TOCK_HTTP_ALLOW sends it; bad requests exit 2 naming the field")
    func httpJobEndToEnd() async throws {
        let directory = try makeScriptsDirectory(["scripts/unused.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try TestPorts.free()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.environment["TOCK_TEST_PYTHON"] ?? "/usr/bin/python3")
        server.arguments = [TestDatabase.packageRoot + "/Tests/HTTPJobs/server.py", "\(port)", directory + "/requests.log"]
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        try #"{"refresh": true}"#.write(toFile: directory + "/body.json", atomically: true, encoding: .utf8)
        let settings = try await TestDatabase.create()
        func run(_ arguments: [String]) async throws -> Invocation { try await tock(arguments, settings: settings, directory: directory) }
        let add = try await run(["job", "add", "refresh", "--http", "PUT http://127.0.0.1:\(port)/ok", "--header", "X-Team: ops",
                                 "--body", "@body.json", "--expect", "200,204"])
        #expect(add.status == 0, "\(add.stderr)")
        #expect(try await run(["job", "show", "refresh"]).stdout.contains("http:          PUT http://127.0.0.1:\(port)/ok"))
        let worker = try TockProcess(["worker"], settings: settings, directory: directory, environment: ["TOCK_HTTP_ALLOW": "127.0.0.1"])
        defer { if worker.isRunning { worker.signal(SIGKILL) } }
        let ran = try await run(["job", "run", "refresh", "--wait", "--wait-timeout", "30"])
        #expect(ran.status == 0 && ran.stdout.hasPrefix("HTTP 200 OK in ") && ran.stdout.hasSuffix("pong {\"refresh\": true}\n"),
                "\(ran.stdout)\(ran.stderr)\n\(worker.log)")
        for (arguments, says) in [(["--http", "ftp://x.example/"], "is not an http:// or https:// URL"),
                                  (["--http", "GET http://x.example/", "--header", "Host: evil"], "header Host is set by the worker"),
                                  (["--http", "GET http://x.example/", "--script", "unused.sh"], "give --script PATH or --http"),
                                  (["--header", "X: 1"], "go with --http")] {
            let refused = try await run(["job", "add", "bad"] + arguments)
            #expect(refused.status == 2 && refused.stderr.contains(says), "\(arguments): \(refused.stderr)")
        }
    }
}
