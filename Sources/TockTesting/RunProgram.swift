import Foundation
import TockCore
#if canImport(Glibc)
import Glibc
#endif

/// What a short-lived program printed and how it exited.
public struct ProgramResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program to completion with posix_spawn and a blocking waitpid, its output in temporary files.
/// Not Foundation's Process: its exit notification can go missing under many concurrent children, and
/// `waitUntilExit` then blocks a thread of the concurrency pool forever, stalling every test that needs it.
public func runProgram(_ path: String, _ arguments: [String], environment: [String: String],
                       directory: String) throws -> ProgramResult {
    let base = NSTemporaryDirectory() + "tock-run-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let outPath = base + ".out", errPath = base + ".err"
    defer {
        unlink(outPath)
        unlink(errPath)
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    // coreutils' env changes directory for us (posix_spawn_file_actions_addchdir_np is not importable).
    let argv = (["/usr/bin/env", "--chdir=\(directory)", path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, "/usr/bin/env", &actions, nil, argv, envp)
    guard spawned == 0 else {
        throw NSError(domain: "runProgram", code: Int(spawned), userInfo: [NSLocalizedDescriptionKey: "cannot start \(path): errno \(spawned)"])
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    // WIFEXITED / WEXITSTATUS, which Swift cannot import: a signal death reads as 128 + the signal.
    let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let read = { (file: String) in (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
    return ProgramResult(status: exit, stdout: read(outPath), stderr: read(errPath))
}

/// `runProgram` on a thread of its own, for async code: its waitpid blocks, and the cooperative pool has as many
/// threads as cores (two here), which the servers and workers under test need.
public func runProgramOffPool(_ path: String, _ arguments: [String], environment: [String: String],
                              directory: String) async throws -> ProgramResult {
    try await offThePool { try runProgram(path, arguments, environment: environment, directory: directory) }
}

/// Runs blocking `body` (a waitpid, `pg_ctl -w`, a socket call) on a thread of its own and awaits its result.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// The built `tock` (TockProcess.binary) run to completion against `settings`, from `directory`, off the pool.
public func runTock(_ arguments: [String], settings: ConnectionSettings, directory: String,
                    environment: [String: String] = [:]) async throws -> ProgramResult {
    try await runProgramOffPool(TockProcess.binary, arguments,
                                environment: ["DATABASE_URL": settings.url(), "PATH": "/usr/bin:/bin", "TZ": "UTC"]
                                    .merging(environment) { $1 },
                                directory: directory)
}
