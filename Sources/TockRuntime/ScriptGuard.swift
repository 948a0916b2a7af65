import CTockSpawn
import Foundation
import Logging
import Synchronization

/// A small process beside the worker that stops the worker's scripts if the worker dies. A script runs in a process
/// group of its own, so a worker killed by `kill -9` or the OOM killer used to leave it running, while
/// `tock.rescue()` retried its run elsewhere: the job ran twice at once.
///
/// The worker keeps each running script's process group id in memory it shares with the guard (a store, no system
/// call, no wake-up of the guard on the path to a script's start), and holds the only other end of a socket the
/// guard waits on. When the worker is gone, however it ended, the socket reaches end of file, and the guard sends
/// SIGTERM to the groups in the shared memory, then SIGKILL after the kill grace, as a timeout would. A worker that
/// exits normally has no scripts left, and its guard exits with it.
public final class ScriptGuard: @unchecked Sendable {  // `slots` is shared memory, written only with atomic stores
    /// One slot per script running at once; a worker's concurrency is at most 1,000.
    static let capacity: Int32 = 1024

    public let pid: pid_t
    private let socket: Int32
    private let slots: UnsafeMutablePointer<Int32>
    private let freeSlots: Mutex<[Int32]>

    private init(pid: pid_t, socket: Int32, slots: UnsafeMutablePointer<Int32>) {
        self.pid = pid
        self.socket = socket
        self.slots = slots
        self.freeSlots = Mutex(Array((0..<Self.capacity).reversed()))
    }

    /// Starts `executable guard-scripts` (the tock binary's hidden subcommand); nil, logged, if it cannot start:
    /// the worker runs on without the protection.
    public static func start(executable: String, killGraceSeconds: Double, logger: Logger) -> ScriptGuard? {
        // argv[0] names the binary itself, not /proc/self/exe, for whoever reads `ps`.
        let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: executable)) ?? executable
        let arguments = [name, "guard-scripts", "--grace-ms", String(Int((killGraceSeconds * 1000).rounded()))]
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        var socket: Int32 = -1
        var slots: UnsafeMutablePointer<Int32>?
        let rc = tock_spawn_guard(&pid, executable, argv, capacity, &socket, &slots)
        guard rc == 0, let slots else {
            logger.warning("could not start the script guard; a script outlives this worker if it is killed", metadata: [
                "executable": "\(executable)", "error": "\(String(cString: strerror(rc)))"])
            return nil
        }
        return ScriptGuard(pid: pid, socket: socket, slots: slots)
    }

    /// Records a started script's process group; returns its slot for `ended`, or nil when every slot is taken
    /// (the script then runs unguarded).
    func started(_ group: pid_t) -> Int32? {
        guard let slot = freeSlots.withLock({ $0.popLast() }) else { return nil }
        tock_guard_set(slots, slot, group)
        return slot
    }

    func ended(slot: Int32) {
        tock_guard_set(slots, slot, 0)
        freeSlots.withLock { $0.append(slot) }
    }

    /// The guard's own process (`tock guard-scripts`): waits on `fd` until the worker is gone, then stops the
    /// process groups in the shared memory `memory`. Returns how many it stopped.
    public static func runGuard(fd: Int32 = 3, memory: Int32 = 4, graceMilliseconds: Int) -> Int {
        Int(tock_guard_main(fd, memory, Int32(clamping: graceMilliseconds)))
    }

    /// The worker is done: the guard sees end of file with no script left and exits; reaped here.
    public func stop() {
        close(socket)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}
