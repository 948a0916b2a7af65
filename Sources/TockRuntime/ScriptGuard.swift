import CTockSpawn
import Foundation
import Logging

/// A small process beside the worker that stops the worker's scripts if the worker dies. A script runs in a process
/// group of its own, so a worker killed by `kill -9` or the OOM killer used to leave it running, while
/// `tock.rescue()` retried its run elsewhere: the job ran twice at once. The worker tells the guard each script's
/// group as it starts and ends, over a socket only the worker holds; when the worker is gone the socket reaches end
/// of file, and the guard sends SIGTERM to the groups still there, then SIGKILL after the kill grace, as a timeout
/// would. A worker that exits normally has no scripts left, and its guard exits with it.
public final class ScriptGuard: Sendable {
    public let pid: pid_t
    private let socket: Int32

    private init(pid: pid_t, socket: Int32) {
        self.pid = pid
        self.socket = socket
    }

    /// Starts `executable guard-scripts` (the tock binary's hidden subcommand); nil, logged, if it cannot start:
    /// the worker runs on without the protection.
    public static func start(executable: String, killGraceSeconds: Double, logger: Logger) -> ScriptGuard? {
        let arguments = [executable, "guard-scripts", "--grace-ms", String(Int((killGraceSeconds * 1000).rounded()))]
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        var socket: Int32 = -1
        let rc = tock_spawn_guard(&pid, executable, argv, &socket)
        guard rc == 0 else {
            logger.warning("could not start the script guard; a script outlives this worker if it is killed", metadata: [
                "executable": "\(executable)", "error": "\(String(cString: strerror(rc)))"])
            return nil
        }
        return ScriptGuard(pid: pid, socket: socket)
    }

    func started(_ group: pid_t) { tock_guard_announce(socket, CChar(UInt8(ascii: "+")), group) }
    func ended(_ group: pid_t) { tock_guard_announce(socket, CChar(UInt8(ascii: "-")), group) }

    /// The guard's own process (`tock guard-scripts`): reads the worker's announcements on `fd` until the worker is
    /// gone, then stops the scripts still running. Returns how many process groups it stopped.
    public static func runGuard(fd: Int32 = 3, graceMilliseconds: Int) -> Int {
        Int(tock_guard_main(fd, Int32(clamping: graceMilliseconds)))
    }

    /// The worker is done: the guard sees end of file with no script left and exits; reaped here.
    public func stop() {
        close(socket)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}
