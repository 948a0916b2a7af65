import ArgumentParser
import Foundation
import ServiceLifecycle
import Synchronization
import TockCLI
import TockCore
import TockRuntime

/// `tock-bench worker`: the production worker (claims, NOTIFY, heartbeats, batched finishes), with a run executor
/// that finishes runs at once as succeeded instead of running their script. The queue and schedule scenarios
/// time the claim → finish machinery with it, on the terms the peers are compared on (no-op jobs): the script
/// name is ignored, and jobs name ordinary scripts, which need not exist. The soak finishes only some jobs so
/// (`--noop-jobs`); the others run their script in the sandbox, as `tock worker` runs it.
struct BenchWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "A worker that finishes the runs it claims at once as succeeded, without running their script.",
        discussion: """
            The options of `tock worker`; --scripts-dir must exist, though with the default --noop-jobs no script \
            in it is run.
            """)

    @OptionGroup var options: GlobalOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var metrics: MetricsOptions

    @Option(help: "The jobs whose runs finish at once: a shell pattern on the job's name. The others' scripts run in the sandbox as `tock worker` runs them.")
    var noopJobs = "*"

    @Option(help: "Append a line for each run finished at once to this file: its run id, job id and fire time (milliseconds since 1970; 0 when not scheduled).")
    var ranLog: String?

    /// Every run succeeds at once with exit 0 and no output.
    static let finished = RunOutcome(status: .succeeded, exitCode: 0)

    func run() async throws {
        let log: RanLog?
        do { log = try ranLog.map { path throws(TockError) in try RanLog(path: path) } } catch { throw fail(error) }
        let everyJob = noopJobs == "*"
        let pattern = noopJobs
        let executor: Worker.RunExecutor = { run in
            guard everyJob || fnmatch(pattern, run.jobName, 0) == 0 else { return nil }
            log?.append(run)
            return Self.finished
        }
        try await runServices(options, metricsOptions: metrics, createEmbedded: false, migrate: false) {
            database, settings, metrics, logger throws(TockError) in
            var configuration = try worker.configuration()
            // A script guard is `tock guard-scripts`, which this executable lacks: the tock beside it serves. With
            // every job finished at once no script ever starts, and there is nothing for a guard to stop.
            configuration.guardExecutable = everyJob ? nil : Self.tockBeside
            let worker = try Worker(database: database, settings: settings, configuration: configuration,
                                    metrics: metrics, executor: executor, logger: logger)
            // The log first: services stop in reverse order, so the worker has drained before the log's last write.
            return (log.map { [$0] } ?? []) + [worker]
        }
    }

    /// The `tock` built beside this executable, if there is one.
    static var tockBeside: String? {
        let path = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("tock").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }
}

/// What a benchmark worker finished at once, one line per run (`<run id> <job id> <fire time ms or 0>`), so what
/// ran can be checked from outside the database. Lines gather in memory and are written every 100 ms, and once
/// more when the worker has stopped, each batch in one write(2) on an O_APPEND descriptor: a reader sees whole
/// batches or a partial last line, which it keeps until the rest arrives.
final class RanLog: Service, Sendable {
    let fd: Int32
    let path: String
    let pending = Mutex<[UInt8]>([])

    init(path: String) throws(TockError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TockError(.failed, "--ran-log \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    func append(_ run: ClaimedRun) {
        let fireTime = run.scheduledFor.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } ?? 0
        let line = "\(run.runId) \(run.jobId) \(fireTime)\n"
        pending.withLock { $0.append(contentsOf: line.utf8) }
    }

    func flush() {
        let bytes = pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        var written = 0
        bytes.withUnsafeBytes { buffer in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    FileHandle.standardError.write(Data("tock-bench worker: writing \(path): \(String(cString: strerror(errno)))\n".utf8))
                    return
                }
                written += n
            }
        }
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            flush()
        }
        flush()
    }
}
