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
/// exits normally has no scripts left, and its guard exits with it. In cgroup containment the guard also gets the
/// worker's cgroup: what the scripts started outside their process groups gets the SIGTERM too, whatever is left
/// after the grace is killed with cgroup.kill, and the cgroups are removed.
public final class ScriptGuard: @unchecked Sendable {  // `slots` is shared memory, written only with atomic stores
    /// One slot per script running at once; a worker's concurrency is at most 1,000.
    static let capacity: Int32 = 1024

    /// The guard's process, and the worker's end of the socket it waits on. pid 0: gone, and not started again yet.
    private struct GuardProcess {
        var pid: pid_t
        var socket: Int32
    }

    private let process: Mutex<GuardProcess>
    /// The shared memory's descriptor, kept to hand it to a guard started again.
    private let memory: Int32
    private let slots: UnsafeMutablePointer<Int32>
    private let freeSlots: Mutex<[Int32]>
    private let executable: String
    private let arguments: [String]

    /// The guard's process id (0 while it is gone and could not be started again).
    public var pid: pid_t { process.withLock { $0.pid } }

    private init(pid: pid_t, socket: Int32, memory: Int32, slots: UnsafeMutablePointer<Int32>, executable: String,
                 arguments: [String]) {
        self.process = Mutex(GuardProcess(pid: pid, socket: socket))
        self.memory = memory
        self.slots = slots
        self.freeSlots = Mutex(Array((0..<Self.capacity).reversed()))
        self.executable = executable
        self.arguments = arguments
    }

    /// Starts `executable guard-scripts` (the tock binary's hidden subcommand); nil, logged, if it cannot start:
    /// the worker runs on without the protection.
    public static func start(executable: String, killGraceSeconds: Double, cgroup: String? = nil,
                             logger: Logger) -> ScriptGuard? {
        // argv[0] names the binary itself, not /proc/self/exe, for whoever reads `ps`.
        let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: executable)) ?? executable
        let arguments = [name, "guard-scripts", "--grace-ms", String(Int((killGraceSeconds * 1000).rounded()))]
            + (cgroup.map { ["--cgroup", $0] } ?? [])
        var pid: pid_t = 0
        var socket: Int32 = -1
        var slots: UnsafeMutablePointer<Int32>?
        var memory: Int32 = -1
        let rc = withArgv(arguments) { tock_spawn_guard(&pid, executable, $0, capacity, &socket, &slots, &memory) }
        guard rc == 0, let slots else {
            logger.warning("could not start the script guard; a script outlives this worker if it is killed", metadata: [
                "executable": "\(executable)", "error": "\(String(cString: strerror(rc)))"])
            return nil
        }
        return ScriptGuard(pid: pid, socket: socket, memory: memory, slots: slots, executable: executable,
                           arguments: arguments)
    }

    /// Starts the guard again if its process is gone. It ignores every signal but SIGKILL, so that means `kill -9`
    /// or the OOM killer; without a new one the worker would run on unguarded, and its scripts outlive its own
    /// death. The new guard watches the same shared memory: the scripts running now are guarded again at once. The
    /// worker calls this with each heartbeat; returns the new guard's process id when it started one.
    @discardableResult
    public func restartIfGone(logger: Logger) -> pid_t? {
        process.withLock { process -> pid_t? in
            var how = "was gone"
            if process.pid > 0 {
                var status: Int32 = 0
                guard waitpid(process.pid, &status, WNOHANG) == process.pid else { return nil }
                // The wait status: the signal in the low 7 bits, else the exit code above them.
                how = status & 0x7f != 0 ? "was killed by signal \(status & 0x7f)" : "exited with status \((status >> 8) & 0xff)"
                close(process.socket)
                process.socket = -1
            }
            let gone = process.pid
            var pid: pid_t = 0
            var socket: Int32 = -1
            let rc = Self.withArgv(arguments) { tock_respawn_guard(&pid, executable, $0, memory, &socket) }
            guard rc == 0 else {
                process.pid = 0
                // Once, not with every heartbeat that tries again.
                if gone > 0 {
                    logger.error("""
                        the script guard \(how) and cannot be started again; a script outlives this worker if it is \
                        killed; trying again with each heartbeat
                        """, metadata: ["guard": "\(gone)", "error": "\(String(cString: strerror(rc)))"])
                }
                return nil
            }
            process = GuardProcess(pid: pid, socket: socket)
            logger.warning("the script guard \(how); started a new one, which guards the scripts running now", metadata: [
                "guard": "\(gone)", "new_guard": "\(pid)"])
            return pid
        }
    }

    private static func withArgv(_ arguments: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> Int32) -> Int32 {
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        return body(argv)
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
    /// process groups in the shared memory `memory`, and the worker's `cgroup` if it has one. Returns how many
    /// groups it stopped.
    public static func runGuard(fd: Int32 = 3, memory: Int32 = 4, graceMilliseconds: Int, cgroup: String? = nil) -> Int {
        Int(tock_guard_main(fd, memory, Int32(clamping: graceMilliseconds), cgroup))
    }

    /// The worker is done: the guard sees end of file with no script left and exits; reaped here.
    public func stop() {
        let process = process.withLock { $0 }
        if process.socket >= 0 { close(process.socket) }
        var status: Int32 = 0
        if process.pid > 0 { while waitpid(process.pid, &status, 0) < 0 && errno == EINTR {} }
        close(memory)
    }
}
