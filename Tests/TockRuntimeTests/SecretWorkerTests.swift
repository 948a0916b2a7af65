import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockRuntime
import TockTesting

@Suite("a job's environment and secrets")
struct SecretWorkerTests {
    static let token = "tok-\(UUID().uuidString)"

    /// A secrets file of `lines`, with `mode`.
    static func secretsFile(_ lines: String, mode: Int = 0o600) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tock-secrets-\(UUID().uuidString)").path
        try lines.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    /// The tables of schema tock (each partition apart) with rows that hold `text` anywhere, and how many.
    static func rowsHolding(_ text: String, _ client: PostgresClient) async throws -> [String] {
        let tables = try await client.query("""
            SELECT c.oid::regclass::text FROM pg_class c
            WHERE c.relnamespace = 'tock'::regnamespace AND c.relkind = 'r' ORDER BY 1
            """).decode(String.self).all()
        var found: [String] = []
        for table in tables {
            let count = try await client.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(table) t WHERE t::text LIKE '%' || $1 || '%'",
                                                             binds: { var b = PostgresBindings(); b.append(text); return b }()))
                .decode(Int.self).all().first ?? 0
            if count > 0 { found.append("\(table): \(count)") }
        }
        return found
    }

    @Test("a script gets its job's variables and secrets; a secret's value is masked in the output stored and streamed, and reaches no table")
    func secretsMasked() async throws {
        let directory = try makeScriptsDirectory(["deploy.sh": """
            #!/bin/sh
            echo "mode=$MODE"
            echo "token=$API_TOKEN"
            echo "in a sentence: Bearer ${API_TOKEN}." >&2
            i=0
            while [ ! -e "$1/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
            echo done
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try Self.secretsFile("# the worker's secrets\nAPI_TOKEN:deploy,report=\(Self.token)\n\nOTHER:*=unused-value\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        try await TestDatabase.withFresh { database, settings in
            var job = JobDefinition(name: "deploy", script: "deploy.sh", args: [directory])
            job.env = ["MODE": "fast"]
            job.secrets = ["API_TOKEN"]
            _ = try await database.createJob(job)
            var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
            configuration.secrets = try SecretsFile.load(file)
            configuration.liveOutputInterval = .milliseconds(200)
            let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
            let run = try await database.runNow("deploy")
            try await withServices([worker]) { () async throws -> Void in
                // While it runs, the output streamed for live viewers is masked too.
                let streamed = try await eventually {
                    try await database.run(run).output?.contains("token=***") == true
                }
                let soFar = try await database.run(run).output ?? "-"
                #expect(streamed, "\(soFar)")
                // The script waits for this file: seen while it ran, however slow the machine.
                #expect(try await database.run(run, withOutput: false).status == "running")
                #expect(FileManager.default.createFile(atPath: directory + "/go", contents: nil))
                #expect(try await eventually { try await database.run(run, withOutput: false).status == "succeeded" })
            }
            let output = try await database.run(run).output
            #expect(output == "mode=fast\ntoken=***\nin a sentence: Bearer ***.\ndone\n", "\(output ?? "-")")
            #expect(try await Self.rowsHolding(Self.token, database.client).isEmpty)
            // The search finds what is there: the output beside the masked token.
            #expect(try await Self.rowsHolding("mode=fast", database.client).count == 1)
            #expect(try await database.job("deploy").secrets == ["API_TOKEN"])
        }
    }

    @Test("a job naming a secret its worker lacks fails with an error that says which and where")
    func missingSecretFails() async throws {
        let directory = try makeScriptsDirectory(["x.sh": "#!/bin/sh\necho ran\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try Self.secretsFile("OTHER:*=some-value\nDB_PASSWORD:another-job=not-for-x\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        try await TestDatabase.withFresh { database, settings in
            var job = JobDefinition(name: "x", script: "x.sh")
            job.secrets = ["DB_PASSWORD"]
            _ = try await database.createJob(job)
            for secrets in [nil, try SecretsFile.load(file)] {
                var configuration = WorkerConfiguration.testing(scriptsDirectory: directory)
                configuration.secrets = secrets
                let worker = try Worker(database: database, settings: settings, configuration: configuration, logger: TestDatabase.logger)
                let run = try await database.runNow("x")
                try await withServices([worker]) { () async throws -> Void in
                    #expect(try await eventually { try await database.run(run, withOutput: false).status == "failed" })
                }
                let error = try await database.run(run).error ?? ""
                // The file holds DB_PASSWORD, for another job only.
                #expect(error.contains("the job needs secret DB_PASSWORD")
                        && error.contains(secrets == nil ? "start it with --secrets-file FILE" : "\(file) does not hold for job x"), "\(error)")
                #expect(try await database.run(run).output?.contains("ran") != true, "the script ran without its secret")
            }
        }
    }

    @Test("a secrets file others may read, a link, a short value or a malformed line is refused, naming the fix")
    func secretsFileRefused() throws {
        let open = try Self.secretsFile("A_TOKEN:*=long-enough\n", mode: 0o644)
        defer { try? FileManager.default.removeItem(atPath: open) }
        #expect(throws: TockError.self) { try SecretsFile.load(open) }
        do { _ = try SecretsFile.load(open) } catch { #expect(error.message.contains("chmod 600"), "\(error.message)") }
        let link = open + ".link"
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: open)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: open)
        defer { try? FileManager.default.removeItem(atPath: link) }
        #expect(throws: TockError.self) { try SecretsFile.load(link) }
        #expect(try SecretsFile.load(open).names == ["A_TOKEN"])
        // Scoped to jobs: a job not named does not get it; masking is literal (a combining mark after it changes nothing).
        let scoped = try SecretsFile.parse("K:deploy,backup=value-1\n", path: "test")
        #expect(scoped.value("K", for: "deploy") == "value-1" && scoped.value("K", for: "report") == nil)
        #expect(SecretMask(["value-1"]).apply("x value-1\u{301} y") == "x ***\u{301} y")
        for (text, says) in [("SHORT:*=abc\n", "too short to be masked"), ("no equals sign\n", "is not NAME:JOBS=value"),
                             ("A:*=1234\nA:x=5678\n", "A is given twice"), ("1BAD:*=12345\n", "is not a name"),
                             // Deny by default: a secret says which jobs may have it.
                             ("OPEN=12345678\n", "say which jobs may have OPEN: OPEN:deploy,backup=value"),
                             ("EMPTY:=12345678\n", "give EMPTY's jobs after the colon")] {
            let file = try Self.secretsFile(text)
            defer { try? FileManager.default.removeItem(atPath: file) }
            do {
                _ = try SecretsFile.load(file)
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.message.contains(says) && !error.message.contains("5678"), "\(error.message)")
            }
        }
    }

    @Test("variables and secret names are checked when a job is saved: nothing Tock sets or that changes how programs load")
    func namesChecked() async throws {
        try await TestDatabase.withFresh { database, _ in
            for (fields, says) in [(#""env": {"LD_PRELOAD": "/tmp/x.so"}"#, "LD_PRELOAD may not be set"),
                                   // What an interpreter runs before the script, or where its requests go.
                                   (#""env": {"PERL5OPT": "-Mbase;system(q(id))"}"#, "PERL5OPT may not be set"),
                                   (#""env": {"NODE_OPTIONS": "--require /tmp/x.js"}"#, "NODE_OPTIONS may not be set"),
                                   (#""env": {"PYTHONSTARTUP": "/tmp/x.py"}"#, "PYTHONSTARTUP may not be set"),
                                   (#""env": {"https_proxy": "http://evil.example"}"#, "https_proxy may not be set"),
                                   (#""env": {"GIT_SSH_COMMAND": "sh -c id"}"#, "GIT_SSH_COMMAND may not be set"),
                                   (#""env": {"PATH": "/tmp"}"#, "PATH may not be set"),
                                   (#""env": {"TOCK_RUN_ID": "1"}"#, "TOCK_RUN_ID may not be set"),
                                   (#""env": {"MODE": 1}"#, "MODE: expected a string"),
                                   (#""secrets": ["ld_library_path"]"#, "is not a name a secret may have"),
                                   (#""env": {"TOKEN": "x"}, "secrets": ["TOKEN"]"#, "both a secret and a variable")] {
                do {
                    _ = try await database.createJob(json: #"{"name": "j", "script": "j.sh", \#(fields)}"#)
                    Issue.record("\(fields) was accepted")
                } catch let error as TockError {
                    #expect(error.message.contains(says), "\(fields): \(error.message)")
                }
            }
            #expect(try await database.jobs().isEmpty)
        }
    }
}
