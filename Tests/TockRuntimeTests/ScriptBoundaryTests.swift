import Foundation
import Synchronization
import Testing
import TockCore
@testable import TockRuntime
import TockTesting

/// The script boundary: what a run starts, its end stops; what was checked is what runs.
@Suite("script boundary: containment and the open script")
struct ScriptBoundaryTests {
    /// The containments this machine can give: the subreaper always; cgroup v2 where this process may create one.
    static let modes: [ScriptContainment.Mode] =
        ScriptContainment.probe().mode == .cgroup ? [.cgroup, .subreaper] : [.subreaper]

    enum RunEnd: String, CaseIterable, CustomTestStringConvertible {
        case exits, timesOut, isCancelled
        var testDescription: String { rawValue }
    }

    /// Starts one daemon with setsid and one by a double fork (each writes its own pid), then exits, or (any other
    /// `$2`) runs on ignoring SIGTERM, so only SIGKILL after the grace ends it (the daemons do not ignore it).
    static let daemonsScript = """
        #!/bin/sh
        setsid sh -c 'echo $$ >> "$1/daemons"; exec sleep 300' sh "$1" </dev/null >/dev/null 2>&1 &
        (sh -c 'echo $$ >> "$1/daemons"; exec sleep 301' sh "$1" </dev/null >/dev/null 2>&1 &)
        while [ "$(wc -l < "$1/daemons" 2>/dev/null || echo 0)" -lt 2 ]; do sleep 0.01; done
        [ "$2" = exits ] || trap '' TERM
        # Ready, the trap set: a stop before it would end the script with SIGTERM.
        : > "$1/ready"
        # Until the test has seen both daemons run: only then may the run end.
        while [ ! -e "$1/go" ]; do sleep 0.01; done
        [ "$2" = exits ] && exit 0
        while :; do sleep 0.1; done
        """

    static func containment(_ mode: ScriptContainment.Mode) throws -> ScriptContainment {
        try ScriptContainment.make(mode == .cgroup ? .cgroup : .subreaper)
    }

    @Test("a setsid daemon and a double-forked daemon are killed at the run's end", arguments: modes, RunEnd.allCases)
    func daemonsStopWithTheRun(mode: ScriptContainment.Mode, end: RunEnd) async throws {
        let directory = try makeScriptsDirectory(["daemons.sh": Self.daemonsScript])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let runner = ScriptRunner(killGraceSeconds: 0.5, containment: try Self.containment(mode))
        let control = ScriptControl()
        let script = try await runner.start(
            executable: directory + "/daemons.sh", arguments: [directory, end.rawValue],
            environment: ["PATH": "/usr/bin:/bin"], workingDirectory: directory,
            timeoutSeconds: end == .timesOut ? 1 : 60, control: control)
        #expect(try await eventually {
            pidsWritten(to: directory + "/daemons").count == 2 && FileManager.default.fileExists(atPath: directory + "/ready")
        })
        let daemons = pidsWritten(to: directory + "/daemons")
        #expect(daemons.allSatisfy(isRunning), "the daemons did not start")
        #expect(FileManager.default.createFile(atPath: directory + "/go", contents: nil))
        if end == .isCancelled { control.cancel() }
        let result = await script.wait()
        #expect(result.timedOut == (end == .timesOut) && result.cancelled == (end == .isCancelled))
        let ended = ContinuousClock.now
        // Killed as the script ended; the moments a loaded machine takes to deliver SIGKILL and reap them are the
        // bound's, not a grace the product gives them (there is none).
        #expect(try await eventually(timeout: .seconds(5), interval: .milliseconds(10)) { !daemons.contains(where: isRunning) },
                "still running after the run ended: \(daemons.filter(isRunning))")
        print("\(mode) \(end): daemons gone \(ContinuousClock.now - ended) after the run ended")
    }

    @Test("the script guard stops setsid and double-forked daemons when the worker's socket closes: in a cgroup before the script's grace ends, under a subreaper with their script", arguments: modes)
    func guardStopsDaemons(mode: ScriptContainment.Mode) async throws {
        let directory = try makeScriptsDirectory(["daemons.sh": Self.daemonsScript])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let containment = try Self.containment(mode)
        // In a cgroup the daemons get SIGTERM at once: a grace of 8 s leaves room to tell "at once" from "after
        // the grace" on a loaded machine. Under a subreaper they die with the script, after its grace.
        let grace: Double = mode == .cgroup ? 8 : 2
        let scriptGuard = try #require(ScriptGuard.start(executable: TockProcess.binary, killGraceSeconds: grace,
                                                         cgroup: containment.cgroupPath, logger: TestDatabase.logger))
        let runner = ScriptRunner(containment: containment)
        let script = try await runner.start(
            executable: directory + "/daemons.sh", arguments: [directory, "stays"], environment: ["PATH": "/usr/bin:/bin"],
            workingDirectory: directory, timeoutSeconds: 60, scriptGuard: scriptGuard)
        #expect(try await eventually {
            pidsWritten(to: directory + "/daemons").count == 2 && FileManager.default.fileExists(atPath: directory + "/ready")
        })
        let daemons = pidsWritten(to: directory + "/daemons")
        #expect(daemons.allSatisfy(isRunning), "the daemons did not start")
        #expect(FileManager.default.createFile(atPath: directory + "/go", contents: nil))
        // What a dead worker's socket does: it closes, here with the script still running. The script ignores
        // SIGTERM, so it dies at the end of the guard's grace; in a cgroup the daemons get the SIGTERM at once,
        // under a subreaper they are killed when their script dies. (stop() returns once the guard has exited.)
        let closed = ContinuousClock.now
        let stopping = Thread { scriptGuard.stop() }
        stopping.start()
        if mode == .cgroup {
            #expect(try await eventually(timeout: .seconds(4), interval: .milliseconds(10)) { !daemons.contains(where: isRunning) },
                    "the daemons were not stopped at once: \(daemons.filter(isRunning))")
            print("\(mode) guard: daemons gone \(ContinuousClock.now - closed) after the worker's socket closed")
            #expect(await script.wait().signal == Int(SIGKILL))
        } else {
            #expect(await script.wait().signal == Int(SIGKILL))
            #expect(try await eventually(timeout: .seconds(5), interval: .milliseconds(10)) { !daemons.contains(where: isRunning) },
                    "the daemons outlived their script: \(daemons.filter(isRunning))")
            print("\(mode) guard: daemons gone \(ContinuousClock.now - closed) after the worker's socket closed")
        }
    }

    @Test("a script swapped for a symlink out of the directory while 150 runs start never runs the outside file")
    func symlinkSwapRace() async throws {
        let outside = try makeScriptsDirectory(["outside.sh": "#!/bin/sh\ntouch \"$1/OUTSIDE-RAN\"\necho outside\n"])
        defer { try? FileManager.default.removeItem(atPath: outside) }
        let directory = try makeScriptsDirectory([".real.sh": "#!/bin/sh\necho real\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sandbox = try ScriptSandbox(directory: directory)
        let target = directory + "/swap.sh"
        #expect(link(directory + "/.real.sh", target) == 0)
        // Swapped with rename(), atomically, every 0.1 ms: the real file (a hard link), then a symlink out.
        let stop = Atomic<Bool>(false)
        let swaps = Atomic<Int>(0)
        let swapper = Thread {
            var flip = false
            while !stop.load(ordering: .relaxed) {
                let temporary = directory + "/.next"
                unlink(temporary)
                if flip { _ = link(directory + "/.real.sh", temporary) } else { _ = symlink(outside + "/outside.sh", temporary) }
                if rename(temporary, target) == 0 { swaps.add(1, ordering: .relaxed) }
                flip.toggle()
                // Thousands of swaps per start still, without holding a core of two for the whole suite: flat out,
                // it starved the tests running beside it (PostgreSQL calls timed out after 30 s).
                usleep(100)
            }
        }
        swapper.start()
        #expect(try await eventually { swaps.load(ordering: .relaxed) > 100 })
        var ran = 0
        var refused = 0
        let runner = ScriptRunner()
        // 150 starts, and more (for 30 s at most) until some met the symlink and some the file: on a busy machine the
        // swapping thread can sit out a whole stretch of starts, and a refused start takes well under a millisecond.
        let deadline = ContinuousClock.now + .seconds(30)
        for started in 0... {
            if started >= 150 && ((refused > 0 && ran > 0) || ContinuousClock.now > deadline) { break }
            do {
                let file = try sandbox.open("swap.sh")
                let result = try await runner.start(script: file, arguments: [outside], environment: ["PATH": "/usr/bin:/bin"],
                                                    workingDirectory: directory, timeoutSeconds: 10).wait()
                #expect(result.output.text == "real\n")
                ran += 1
            } catch {
                #expect(error.message.contains("is outside the scripts directory"), "\(error.message)")
                refused += 1
            }
        }
        stop.store(true, ordering: .relaxed)
        print("symlink swap: \(ran) ran the real file, \(refused) refused, \(swaps.load(ordering: .relaxed)) swaps")
        #expect(!FileManager.default.fileExists(atPath: outside + "/OUTSIDE-RAN"), "the outside file ran")
        // The swap really raced the runs: both sides were met.
        #expect(refused > 0 && ran > 0)
    }

    @Test("without openat2, the walk opens nested scripts and refuses every symlink with the fix")
    func walkWithoutOpenat2() throws {
        let directory = try makeScriptsDirectory(["ok.sh": "#!/bin/sh\n", "sub/inner.sh": "#!/bin/sh\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createSymbolicLink(atPath: directory + "/escape.sh", withDestinationPath: "/bin/sh")
        try FileManager.default.createSymbolicLink(atPath: directory + "/inside.sh", withDestinationPath: "ok.sh")
        try FileManager.default.createSymbolicLink(atPath: directory + "/linked", withDestinationPath: "sub")
        let sandbox = try ScriptSandbox(directory: directory, walkOnly: true)
        #expect(try sandbox.open("sub/inner.sh").path == sandbox.root + "/sub/inner.sh")
        #expect(try sandbox.open("./ok.sh").path == sandbox.root + "/ok.sh")
        for script in ["escape.sh", "inside.sh", "linked/inner.sh"] {
            #expect {
                _ = try sandbox.open(script)
            } throws: { error in
                (error as? TockError)?.message.contains("replace the symlink") == true
            }
        }
    }

    @Test("--run-as is refused, with the fix, unless the worker runs as root")
    func runAsNeedsRoot() throws {
        #expect {
            _ = try ScriptCredentials.lookup("nobody", workerUID: 1000)
        } throws: { error in
            (error as? TockError)?.message.contains("only a worker started as root can run scripts as another user") == true
        }
    }

    @Test("a script started with run-as credentials runs as that user and its groups", .enabled(if: getuid() == 0, "needs root"))
    func runAsNobody() async throws {
        let directory = try makeScriptsDirectory(["who.sh": "#!/bin/sh\nid -u\nid -g\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let nobody = try ScriptCredentials.lookup("nobody")
        for mode in Self.modes {
            let runner = ScriptRunner(containment: try Self.containment(mode), credentials: nobody)
            let result = try await runner.run(executable: directory + "/who.sh", arguments: [], environment: ["PATH": "/usr/bin:/bin"],
                                              workingDirectory: directory, timeoutSeconds: 10)
            #expect(result.output.text == "\(nobody.uid)\n\(nobody.gid)\n", "\(mode)")
        }
    }

    /// Running: not exited (a zombie waiting for its parent to reap it has).
    func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }
}
