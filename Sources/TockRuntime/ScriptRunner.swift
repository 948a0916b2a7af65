import CTockSpawn
import Foundation
import Synchronization
import TockCore

/// How a script ended.
public struct ScriptResult: Sendable {
    public var exitCode: Int?
    public var signal: Int?
    public var timedOut: Bool
    public var cancelled: Bool
    public var output: OutputTail
    public var duration: Duration

    /// The run's final status and error, as `tock.finish_run` records them.
    public func outcome(timeoutSeconds: Double?) -> RunOutcome {
        let status: RunStatus
        var error: String?
        if cancelled {
            status = .cancelled
            error = "cancelled; the script and every process it started were terminated"
        } else if timedOut {
            status = .timedOut
            error = "timed out after \(DurationText.format(seconds: timeoutSeconds ?? 0)); the script and every process it started were stopped"
        } else if exitCode == 0 {
            status = .succeeded
        } else if let exitCode {
            status = .failed
            error = "exited with status \(exitCode)"
        } else {
            status = .failed
            error = "killed by signal \(signal ?? 0)" + (signal.flatMap(ScriptResult.signalName).map { " (\($0))" } ?? "")
        }
        return RunOutcome(status: status, exitCode: exitCode, error: error, output: output.text,
                          outputBytes: output.totalBytes, outputTruncated: output.truncated)
    }

    static func signalName(_ signal: Int) -> String? {
        [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"][signal]
    }
}

/// Lets the owner of a running script stop it: `cancel()` sends SIGTERM to its process group (and, in a cgroup, to
/// every process of the run), then SIGKILL after the runner's kill grace.
public final class ScriptControl: Sendable {
    private let cancelled = Atomic<Bool>(false)
    private let wakeFD = Mutex<Int32>(-1)
    private let published = Mutex<OutputTail?>(nil)

    public init() {}

    public var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    public func cancel() {
        cancelled.store(true, ordering: .releasing)
        wakeFD.withLock { fd in
            if fd >= 0 {
                var one: UInt8 = 1
                _ = write(fd, &one, 1)
            }
        }
    }

    /// What the script has printed so far, as last published by the runner (about twice a second while it
    /// prints); nil before its first output.
    public var outputSoFar: OutputTail? { published.withLock { $0 } }

    func publish(_ output: OutputTail) { published.withLock { $0 = output } }

    func attach(wakeFD fd: Int32) { wakeFD.withLock { $0 = fd } }
    func detach() { wakeFD.withLock { $0 = -1 } }
}

/// Runs one script as a child process: the argument array as given (no shell), in its own process group,
/// stdout and stderr captured together into a capped tail, the timeout enforced by signalling the whole run.
/// When the script's main process exits, whatever it started is killed too, in its group or not (see
/// ScriptContainment).
public struct ScriptRunner: Sendable {
    /// Where each script's monitor loop runs (see MonitorThreads).
    static let monitors = MonitorThreads()

    public var outputCapBytes: Int
    /// Seconds between SIGTERM and SIGKILL when a script times out or is cancelled.
    public var killGraceSeconds: Double
    /// How what a run starts is stopped at its end.
    public var containment: ScriptContainment
    /// The user scripts run as; nil: the worker's own.
    public var credentials: ScriptCredentials?

    public init(outputCapBytes: Int = 1 << 20, killGraceSeconds: Double = 5,
                containment: ScriptContainment = .shared, credentials: ScriptCredentials? = nil) {
        self.outputCapBytes = outputCapBytes
        self.killGraceSeconds = killGraceSeconds
        self.containment = containment
        self.credentials = credentials
    }

    public func run(executable: String, arguments: [String], environment: [String: String],
                    workingDirectory: String?, timeoutSeconds: Double?,
                    control: ScriptControl = ScriptControl()) async throws(TockError) -> ScriptResult {
        try await start(executable: executable, arguments: arguments, environment: environment,
                        workingDirectory: workingDirectory, timeoutSeconds: timeoutSeconds, control: control).wait()
    }

    /// `start(script:…)` for a program named by its path, outside any sandbox (the caller chose it).
    public func start(executable: String, arguments: [String], environment: [String: String],
                      workingDirectory: String?, timeoutSeconds: Double?,
                      control: ScriptControl = ScriptControl(),
                      scriptGuard: ScriptGuard? = nil) async throws(TockError) -> RunningScript {
        let fd = open(executable, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            throw TockError(.failed, "could not start \(executable): \(String(cString: strerror(errno)))")
        }
        return try await start(script: ScriptFile(fd: fd, path: executable), arguments: arguments,
                               environment: environment, workingDirectory: workingDirectory,
                               timeoutSeconds: timeoutSeconds, control: control, scriptGuard: scriptGuard)
    }

    /// Starts the script and returns as soon as its process exists; `wait()` on the result watches it to its end.
    /// A worker does its bookkeeping (logging, the live-output task) after this, off the path to the script's start.
    /// The open file runs (execveat), not whatever its path names by now. With `scriptGuard`, the script's process
    /// group is in the guard's shared memory from its start to its end.
    public func start(script: ScriptFile, arguments: [String], environment: [String: String],
                      workingDirectory: String?, timeoutSeconds: Double?,
                      control: ScriptControl = ScriptControl(),
                      scriptGuard: ScriptGuard? = nil) async throws(TockError) -> RunningScript {
        var pipeFDs: [Int32] = [-1, -1]
        var wakeFDs: [Int32] = [-1, -1]
        guard tock_pipe(&pipeFDs, 0) == 0, tock_pipe(&wakeFDs, 1) == 0 else {
            throw TockError(.failed, "could not create a pipe: \(String(cString: strerror(errno)))")
        }
        let start = ContinuousClock.now
        // Without a cgroup of its own (subreaper mode, or one that could not be created), a run has a supervisor.
        let cgroup = containment.makeRunCgroup()
        var pid: pid_t = 0
        var group: pid_t = 0
        let argv = ([script.path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let cwd = workingDirectory.map { strdup($0) }
        let groups = credentials?.groups ?? []
        var rc: Int32 = 0
        // ETXTBSY: some process still holds the script open for writing. Besides a deploy in progress, this
        // is the fork race every multithreaded spawner has (Go's os/exec retries too): a child forked by
        // another thread inherits a write descriptor until it execs. It clears within milliseconds.
        for attempt in 0..<8 {
            rc = argv.withUnsafeBufferPointer { argv in
                envp.withUnsafeBufferPointer { envp in
                    groups.withUnsafeBufferPointer { groups in
                        var request = tock_spawn_request()
                        request.script_fd = script.fd
                        request.argv = argv.baseAddress
                        request.envp = envp.baseAddress
                        request.cwd = UnsafePointer(cwd ?? nil)
                        request.output_fd = pipeFDs[1]
                        request.cgroup_fd = cgroup?.fd ?? -1
                        request.subreaper = cgroup == nil ? 1 : 0
                        if let credentials {
                            request.set_credentials = 1
                            request.uid = credentials.uid
                            request.gid = credentials.gid
                            request.groups = groups.baseAddress
                            request.group_count = Int32(groups.count)
                        }
                        return tock_spawn_script(&request, &pid, &group)
                    }
                }
            }
            guard rc == ETXTBSY else { break }
            try? await Task.sleep(for: .milliseconds(1 << attempt))
        }
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        cwd.map { free($0) }
        close(pipeFDs[1])
        guard rc == 0 else {
            close(pipeFDs[0])
            close(wakeFDs[0])
            close(wakeFDs[1])
            cgroup?.remove()
            let reason = String(cString: strerror(rc))
            let hint = rc == ENOEXEC ? " (does it start with a #! line?)"
                : rc == EACCES ? " (is it executable\(credentials.map { " and readable by \($0.user)" } ?? "")?)"
                : rc == ETXTBSY ? " (is it still open for writing?)" : ""
            throw TockError(.failed, "could not start \(script.path): \(reason)\(hint)")
        }
        let guardSlot = scriptGuard?.started(group)
        control.attach(wakeFD: wakeFDs[1])
        return RunningScript(
            monitor: ProcessMonitor(pid: pid, group: group, cgroup: cgroup, outputFD: pipeFDs[0], wakeFD: wakeFDs[0],
                                    start: start, timeoutSeconds: timeoutSeconds, killGraceSeconds: killGraceSeconds,
                                    outputCapBytes: outputCapBytes, control: control, scriptGuard: scriptGuard,
                                    guardSlot: guardSlot),
            wakeWriteFD: wakeFDs[1])
    }
}

/// A script whose process has started. Call `wait()` exactly once: it watches the process and closes its pipes.
public struct RunningScript: Sendable {
    fileprivate let monitor: ProcessMonitor
    fileprivate let wakeWriteFD: Int32

    /// The script's process id (its process group's id).
    public var pid: pid_t { monitor.group }

    /// Watches the script to its end (output, timeout, cancellation); cancelling the task cancels the script.
    public func wait() async -> ScriptResult {
        let monitor = self.monitor
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ScriptResult, Never>) in
                ScriptRunner.monitors.run { continuation.resume(returning: monitor.run()) }
            }
        } onCancel: {
            monitor.control.cancel()
        }
        monitor.control.detach()
        close(wakeWriteFD)
        return result
    }
}

/// The blocking loop that watches one child: reads its output, notices its exit (pidfd), enforces the timeout.
private struct ProcessMonitor: @unchecked Sendable {
    /// The child to wait for: the script, or its supervisor (subreaper containment), which exits as the script did.
    let pid: pid_t
    /// The script's process group.
    let group: pid_t
    let cgroup: RunCgroup?
    let outputFD: Int32
    let wakeFD: Int32
    let start: ContinuousClock.Instant
    let timeoutSeconds: Double?
    let killGraceSeconds: Double
    let outputCapBytes: Int
    let control: ScriptControl
    let scriptGuard: ScriptGuard?
    let guardSlot: Int32?

    func run() -> ScriptResult {
        var output = OutputTail(capacity: outputCapBytes)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let pidFD = tock_pidfd_open(pid)
        var outputOpen = true
        var exited = false
        var timedOut = false
        var cancelled = false
        var terminateSentAt: ContinuousClock.Instant?
        var killSent = false
        var exitedAt: ContinuousClock.Instant?
        // Output is published for live viewers at most every publishEvery: each publication costs a copy of the
        // tail on the next append.
        let publishEvery = Duration.milliseconds(500)
        var publishedBytes = 0
        var publishedAt = start
        // Non-blocking reads: the loop only drains what poll() says is there.
        _ = fcntl(outputFD, F_SETFL, fcntl(outputFD, F_GETFL) | O_NONBLOCK)
        let deadline = timeoutSeconds.map { start + .milliseconds(Int64(($0 * 1000).rounded(.up))) }

        while outputOpen || !exited {
            let now = ContinuousClock.now
            // Timeout and cancel: SIGTERM to the group, SIGKILL after the grace.
            if !exited {
                if terminateSentAt == nil, control.isCancelled {
                    cancelled = true
                    terminateSentAt = now
                    signalRun(SIGTERM)
                } else if terminateSentAt == nil, let deadline, now >= deadline {
                    timedOut = true
                    terminateSentAt = now
                    signalRun(SIGTERM)
                }
                if let sent = terminateSentAt, !killSent, now - sent >= .milliseconds(Int64(killGraceSeconds * 1000)) {
                    killSent = true
                    signalRun(SIGKILL)
                }
            }
            // After the main process exits, output still held open by an escaped process is not waited for long.
            if exited, let exitedAt, now - exitedAt > .seconds(2) { break }

            var fds: [pollfd] = []
            if outputOpen { fds.append(pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0)) }
            if !exited, pidFD >= 0 { fds.append(pollfd(fd: pidFD, events: Int16(POLLIN), revents: 0)) }
            fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            var timeoutMS: Int32 = 1000
            if pidFD < 0, !exited { timeoutMS = 10 }  // no pidfd: look at the child now and then
            if !exited, let deadline, terminateSentAt == nil {
                timeoutMS = min(timeoutMS, Self.milliseconds(until: deadline, from: now))
            }
            if let sent = terminateSentAt, !killSent {
                timeoutMS = min(timeoutMS, Self.milliseconds(until: sent + .milliseconds(Int64(killGraceSeconds * 1000)), from: now))
            }
            if exited { timeoutMS = min(timeoutMS, 100) }
            if output.totalBytes != publishedBytes {
                timeoutMS = min(timeoutMS, Self.milliseconds(until: publishedAt + publishEvery, from: now))
            }
            _ = poll(&fds, nfds_t(fds.count), max(timeoutMS, 0))

            if outputOpen {
                let count = read(outputFD, &buffer, buffer.count)
                if count > 0 {
                    output.append(buffer[0..<count])
                } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                    outputOpen = false
                }
            }
            if output.totalBytes != publishedBytes, ContinuousClock.now - publishedAt >= publishEvery {
                control.publish(output)
                publishedBytes = output.totalBytes
                publishedAt = ContinuousClock.now
            }
            if let wake = fds.last, wake.revents != 0 {
                var sink = [UInt8](repeating: 0, count: 64)
                _ = read(wakeFD, &sink, sink.count)
            }
            if !exited, tock_has_exited(pid) == 1 {
                exited = true
                exitedAt = ContinuousClock.now
                // The run ends with its main process: whatever it started is killed now. In a cgroup, here (the
                // main process is a zombie until reaped, so its group id is still ours); a supervisor has done it.
                if let cgroup {
                    kill(-group, SIGKILL)
                    cgroup.killAll()
                }
            }
        }
        // Before the main process is reaped: until then its group id cannot be reused, so the guard never holds
        // another process's group.
        if let guardSlot { scriptGuard?.ended(slot: guardSlot) }
        var exitCode: Int32 = -1
        var signal: Int32 = -1
        _ = tock_wait(pid, 1, &exitCode, &signal)
        cgroup?.remove()
        close(outputFD)
        close(wakeFD)
        if pidFD >= 0 { close(pidFD) }
        return ScriptResult(exitCode: exitCode >= 0 ? Int(exitCode) : nil, signal: signal >= 0 ? Int(signal) : nil,
                            timedOut: timedOut, cancelled: cancelled, output: output,
                            duration: ContinuousClock.now - start)
    }

    /// SIGTERM or SIGKILL to the whole run: its process group, and in a cgroup every process in it (those that left
    /// the group too). In subreaper containment, those are killed by the supervisor when the main process ends.
    private func signalRun(_ signal: Int32) {
        kill(-group, signal)
        guard let cgroup else { return }
        if signal == SIGKILL { cgroup.killAll() } else { cgroup.signalAll(signal) }
    }

    static func milliseconds(until instant: ContinuousClock.Instant, from now: ContinuousClock.Instant) -> Int32 {
        Int32(clamping: max((instant - now).wholeMilliseconds, 0) + 1)
    }
}
