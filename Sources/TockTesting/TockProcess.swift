import CTockSpawn
import Foundation
import Synchronization
import TockCore

/// A `tock` (or `tock-bench`) process started by a test, its output in a log file, signalled and awaited like the real thing.
public final class TockProcess: @unchecked Sendable {
    /// The built binary: TOCK_BIN (ops/test sets it), else the debug build beside the package.
    public static let binary: String = ProcessInfo.processInfo.environment["TOCK_BIN"]
        ?? TestDatabase.packageRoot + "/.build/debug/tock"
    /// The benchmarks' binary: TOCK_BENCH_BIN (ops/test sets it), else the one beside `binary`.
    public static let benchBinary: String = ProcessInfo.processInfo.environment["TOCK_BENCH_BIN"]
        ?? URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("tock-bench").path

    public let process = Process()
    public let logPath: String

    /// `tock worker`, `tock scheduler` and `tock up` run with their safety sweep an hour away (TestSweep) unless
    /// `arguments` set `--sweep-seconds`: a test waiting on a wake-up must not pass on the sweep. `launcher` runs
    /// the binary (`ip netns exec NAME`, which execs it: the process is still the binary's).
    public init(_ arguments: [String], settings: ConnectionSettings, directory: String,
                environment: [String: String] = [:], binary: String = TockProcess.binary, launcher: [String] = []) throws {
        var arguments = arguments
        if ["worker", "scheduler", "up"].contains(arguments.first ?? ""), !arguments.contains("--sweep-seconds") {
            arguments += ["--sweep-seconds", TestSweep.seconds]
        }
        logPath = directory + "/tock-\(arguments.first ?? "x")-\(UInt32.random(in: 0...UInt32.max)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: launcher.first ?? binary)
        process.arguments = launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [binary] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ["DATABASE_URL": settings.url(), "PATH": "/usr/bin:/bin", "TZ": "UTC",
                               "TOCK_LOG_LEVEL": "info"].merging(environment) { $1 }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// Waits for the process to exit; returns its status (the signal's number for one a signal ended, as Foundation
    /// says), or nil if it is still running after `timeout`.
    /// The exit is read from the kernel (waitid without reaping), not only from Foundation: Foundation learns of it
    /// when a socket the child inherited closes, and a process another test spawned meanwhile can inherit that
    /// socket too and keep it open long after this one exited.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30)) async throws -> Int32? {
        let pid = process.processIdentifier
        let status = Mutex<Int32?>(nil)
        let exited = try await eventually(timeout: timeout, interval: .milliseconds(50)) {
            var code: Int32 = -1, signal: Int32 = -1
            switch tock_exit_status(pid, &code, &signal) {
            case 1:
                status.withLock { $0 = signal >= 0 ? signal : code }
                return true
            case 0:
                return false
            default:
                return !self.process.isRunning  // reaped by Foundation: it knows
            }
        }
        guard exited else { return nil }
        return status.withLock { $0 } ?? process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Whether `pid` is a process that has not exited (a zombie waiting for its parent to reap it has).
public func processIsRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}
