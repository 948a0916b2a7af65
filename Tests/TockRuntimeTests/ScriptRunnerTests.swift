import Foundation
import Testing
import TockCore
import TockRuntime
import TockTesting

@Suite("script runner and sandbox")
struct ScriptRunnerTests {
    @Test("runs the argument array without a shell and captures stdout and stderr with the exit code")
    func capturesOutput() async throws {
        let directory = try makeScriptsDirectory(["args.sh": "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\necho oops >&2\nexit 3\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try await ScriptRunner().run(
            executable: directory + "/args.sh", arguments: ["one", "two words", "$HOME;rm -rf /"], environment: [:],
            workingDirectory: directory, timeoutSeconds: 10)
        #expect(result.exitCode == 3)
        #expect(result.output.text == "[one]\n[two words]\n[$HOME;rm -rf /]\noops\n")
        let outcome = result.outcome(timeoutSeconds: 10)
        #expect(outcome.status == .failed)
        #expect(outcome.error == "exited with status 3")
    }

    @Test("start returns once the process exists, before the script ends; wait then sees it to its end")
    func startThenWait() async throws {
        // The script waits for a file the test creates only after start has returned.
        let directory = try makeScriptsDirectory(["gate.sh": """
            #!/bin/sh
            while [ ! -e "$1/open" ]; do sleep 0.01; done
            echo through
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = try await ScriptRunner().start(
            executable: directory + "/gate.sh", arguments: [directory], environment: ["PATH": "/usr/bin:/bin"],
            workingDirectory: directory, timeoutSeconds: 30)
        #expect(script.pid > 0)
        #expect(kill(script.pid, 0) == 0, "the script's process is not running after start returned")
        #expect(FileManager.default.createFile(atPath: directory + "/open", contents: Data()))
        let result = await script.wait()
        #expect(result.exitCode == 0)
        #expect(result.output.text == "through\n")
    }

    @Test("the script guard stops a script's whole group when the worker's end of its socket closes, and only then")
    func guardStopsOrphanedScripts() async throws {
        let directory = try makeScriptsDirectory(["wait.sh": "#!/bin/sh\nsleep 300 &\necho $! > \"$1/grandchild.pid\"\nwait\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let scriptGuard = try #require(ScriptGuard.start(executable: TockProcess.binary, killGraceSeconds: 2,
                                                         logger: TestDatabase.logger))
        let runner = ScriptRunner()
        // A script that ends by itself leaves nothing for the guard.
        let quick = try await runner.start(executable: "/bin/true", arguments: [], environment: [:],
                                           workingDirectory: directory, timeoutSeconds: 10, scriptGuard: scriptGuard)
        #expect(await quick.wait().exitCode == 0)
        // A timeout far off: the guard must be what stops it, however slow two busy cores make the guard.
        let script = try await runner.start(executable: directory + "/wait.sh", arguments: [directory], environment: [:],
                                            workingDirectory: directory, timeoutSeconds: 120, scriptGuard: scriptGuard)
        #expect(try await eventually { !pidsWritten(to: directory + "/grandchild.pid").isEmpty })
        let grandchild = try #require(pidsWritten(to: directory + "/grandchild.pid").first)
        // What a dead worker's socket does: it closes, here with the script still running.
        scriptGuard.stop()
        let result = await script.wait()
        #expect(result.signal == Int(SIGTERM) && !result.timedOut && !result.cancelled)
        // Gone, or at most a zombie waiting for init: never still running.
        #expect(kill(grandchild, 0) != 0 || Self.isZombie(grandchild), "the script's child outlived the guard")
    }

    @Test("a timed-out script and the grandchild it spawned are both killed")
    func timeoutKillsTheProcessGroup() async throws {
        let directory = try makeScriptsDirectory(["slow.sh": """
            #!/bin/sh
            sleep 300 &
            echo $! > "$1/grandchild.pid"
            echo $$ > "$1/child.pid"
            wait
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let started = ContinuousClock.now
        let result = try await ScriptRunner(killGraceSeconds: 1).run(
            executable: directory + "/slow.sh", arguments: [directory], environment: ["PATH": "/usr/bin:/bin"],
            workingDirectory: directory, timeoutSeconds: 0.5)
        #expect(result.timedOut)
        #expect(result.outcome(timeoutSeconds: 0.5).status == .timedOut)
        // Killed at the timeout, not left to its 300 s sleep: a bound far from both, as two busy cores can take
        // seconds to start and reap processes (12 s seen while another suite ran).
        #expect(ContinuousClock.now - started < .seconds(60))
        for file in ["child.pid", "grandchild.pid"] {
            let pid = try #require(Int32(try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            // Gone, or at most a zombie waiting for init: never still running.
            #expect(try await eventually(timeout: .seconds(5)) { kill(pid, 0) != 0 || Self.isZombie(pid) }, "\(file) \(pid) survived")
        }
    }

    @Test("output beyond the cap keeps the last bytes and the total count")
    func outputCap() async throws {
        let directory = try makeScriptsDirectory(["chatty.sh": "#!/bin/sh\nseq 1 100000\necho last line\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try await ScriptRunner(outputCapBytes: 1024).run(
            executable: directory + "/chatty.sh", arguments: [], environment: ["PATH": "/usr/bin:/bin"],
            workingDirectory: directory, timeoutSeconds: 30)
        #expect(result.exitCode == 0)
        #expect(result.output.truncated)
        #expect(result.output.bytes.count == 1024)
        #expect(result.output.totalBytes > 500_000)
        #expect(result.output.text.hasSuffix("100000\nlast line\n"))
    }

    @Test("cancel sends SIGTERM to the group, then SIGKILL to a script that ignores it")
    func cancelEscalates() async throws {
        // The marker file says the trap is set: cancelled before that, SIGTERM would end the script at once.
        let directory = try makeScriptsDirectory(["stubborn.sh": "#!/bin/sh\ntrap '' TERM\necho ready\n: > \"$1/trapped\"\nwhile :; do sleep 0.1; done\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let control = ScriptControl()
        let task = Task {
            try await ScriptRunner(killGraceSeconds: 0.5).run(
                executable: directory + "/stubborn.sh", arguments: [directory], environment: ["PATH": "/usr/bin:/bin"],
                workingDirectory: directory, timeoutSeconds: 60, control: control)
        }
        #expect(try await eventually { FileManager.default.fileExists(atPath: directory + "/trapped") })
        control.cancel()
        let result = try await task.value
        #expect(result.cancelled)
        #expect(result.signal == 9)
        #expect(result.output.text.hasPrefix("ready"))
    }

    @Test("100 scripts at once each have a monitor draining its output while the others still run")
    func manyScriptsAtOnce() async throws {
        // Each script prints more than a pipe holds, so it gets past `head` only once its monitor drains it; then
        // it waits for all the others to get there. A pool of fewer than 100 monitors would leave the rest
        // blocked (libdispatch's, tried here, ran 39 blocked items at once).
        let count = 100
        let directory = try makeScriptsDirectory(["gate.sh": """
            #!/bin/sh
            head -c 100000 /dev/zero
            touch "$1/ready.$$"
            n=0
            while [ ! -e "$1/go" ]; do sleep 0.2; n=$((n + 1)); [ $n -gt 300 ] && exit 9; done
            exit 0
            """])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let flags = directory + "/flags"
        try FileManager.default.createDirectory(atPath: flags, withIntermediateDirectories: true)
        let runs = Task {
            try await withThrowingTaskGroup(of: ScriptResult.self) { group in
                for _ in 0..<count {
                    group.addTask {
                        try await ScriptRunner().run(
                            executable: directory + "/gate.sh", arguments: [flags], environment: ["PATH": "/usr/bin:/bin"],
                            workingDirectory: directory, timeoutSeconds: 120)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        let allReady = try await eventually(timeout: .seconds(40), interval: .milliseconds(100)) {
            ((try? FileManager.default.contentsOfDirectory(atPath: flags)) ?? []).filter { $0.hasPrefix("ready.") }.count == count
        }
        #expect(allReady, "not every script's output was drained while the others ran")
        FileManager.default.createFile(atPath: flags + "/go", contents: nil)
        let results = try await runs.value
        #expect(results.count == count)
        #expect(results.allSatisfy { $0.exitCode == 0 && $0.output.totalBytes == 100_000 })
    }

    @Test("a script that cannot start says why")
    func cannotStart() async throws {
        let directory = try makeScriptsDirectory(["noshebang.sh": "echo hi\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        await #expect(throws: TockError.self) {
            _ = try await ScriptRunner().run(executable: directory + "/noshebang.sh", arguments: [], environment: [:],
                                             workingDirectory: directory, timeoutSeconds: 5)
        }
    }

    @Test("a script briefly held open for writing starts once the writer closes it; one held open says so")
    func textFileBusy() async throws {
        let directory = try makeScriptsDirectory(["busy.sh": "#!/bin/sh\necho started\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = directory + "/busy.sh"
        // A writer that closes after 20 ms: the fork race a multithreaded spawner meets. O_CLOEXEC: the other tests
        // in this process spawn children meanwhile, and one that inherited the write descriptor would hold it.
        let writer = open(script, O_WRONLY | O_CLOEXEC)
        #expect(writer >= 0)
        let closer = Task { try await Task.sleep(for: .milliseconds(20)); close(writer) }
        // The timeout is not what this tests: long enough for a loaded machine.
        let result = try await ScriptRunner().run(executable: script, arguments: [], environment: [:],
                                                  workingDirectory: directory, timeoutSeconds: 30)
        try await closer.value
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.output.text == "started\n")
        // A writer that stays: a clear error once the retries are spent.
        let holder = open(script, O_WRONLY | O_CLOEXEC)
        defer { close(holder) }
        do {
            _ = try await ScriptRunner().run(executable: script, arguments: [], environment: [:],
                                             workingDirectory: directory, timeoutSeconds: 30)
            Issue.record("a script open for writing started")
        } catch {
            #expect(error.message.contains("Text file busy (is it still open for writing?)"), "\(error.message)")
        }
    }

    @Test("the sandbox refuses absolute paths, '..', symlinks out of it, and non-executables")
    func sandbox() throws {
        let directory = try makeScriptsDirectory(["ok.sh": "#!/bin/sh\n", "sub/inner.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createSymbolicLink(atPath: directory + "/escape.sh", withDestinationPath: "/bin/sh")
        try FileManager.default.createSymbolicLink(atPath: directory + "/inside.sh", withDestinationPath: "ok.sh")
        try "data".write(toFile: directory + "/plain.txt", atomically: true, encoding: .utf8)
        let sandbox = try ScriptSandbox(directory: directory)
        #expect(try sandbox.resolve("ok.sh") == sandbox.root + "/ok.sh")
        #expect(try sandbox.resolve("sub/inner.sh") == sandbox.root + "/sub/inner.sh")
        #expect(try sandbox.resolve("inside.sh") == sandbox.root + "/ok.sh")
        for (script, fragment) in [("/bin/sh", "outside the scripts directory"), ("../ok.sh", "outside the scripts directory"),
                                   ("sub/../../x.sh", "outside"), ("escape.sh", "outside the scripts directory"),
                                   ("missing.sh", "does not exist"), ("plain.txt", "not executable")] {
            do {
                _ = try sandbox.resolve(script)
                Issue.record("\(script) was allowed")
            } catch {
                #expect(error.message.contains(fragment), "\(script): \(error.message)")
            }
        }
        #expect(throws: TockError.self) { try ScriptSandbox(directory: directory + "/nope") }
    }

    static func isZombie(_ pid: Int32) -> Bool {
        ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "").contains(") Z ")
    }
}
