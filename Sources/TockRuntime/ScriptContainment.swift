import CTockSpawn
import Foundation
import Synchronization
import TockCore

/// How a worker makes sure that what a run starts, the run's end stops: every process, including those that called
/// `setsid()` or double-forked out of the script's process group.
///
/// - `cgroup`: each run starts in a cgroup v2 of its own (clone3 `CLONE_INTO_CGROUP`, so no instruction of the
///   script runs outside it), a child of one cgroup this worker creates beside itself. When the script's main
///   process exits, `cgroup.kill` kills whatever is left in it; the worker's script guard kills the worker's whole
///   cgroup if the worker dies. Needs a writable cgroup2 mount and `cgroup.kill` (Linux 5.14).
/// - `subreaper`: each run has a supervisor process between the worker and the script, which is
///   `PR_SET_CHILD_SUBREAPER`: every process the script starts that loses its parent is re-parented to it, and to no
///   other run's, so what belongs to the run is known by construction (the kernel's process tree), not guessed from
///   process groups, sessions or environment variables a script can change. When the script's main process exits,
///   the supervisor kills every process left below it, then exits as the script did.
public final class ScriptContainment: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        case cgroup, subreaper
    }

    /// What an operator asks for (`tock worker --containment`).
    public enum Preference: String, Sendable, CaseIterable {
        case automatic = "auto", cgroup, subreaper
    }

    public let mode: Mode
    /// Why this mode: for the log and `tock doctor` (e.g. why cgroup v2 could not be used).
    public let detail: String
    /// The cgroup directory whose children are this worker's runs' cgroups (cgroup mode).
    public let cgroupPath: String?
    private let runs = Atomic<Int>(0)

    private init(mode: Mode, detail: String, cgroupPath: String?) {
        self.mode = mode
        self.detail = detail
        self.cgroupPath = cgroupPath
        if let cgroupPath { Self.removeAtExit(cgroupPath) }
    }

    /// This process's containment when none is given (scripts started outside a worker, as in the unit tests).
    public static let shared: ScriptContainment = (try? make(.automatic))
        ?? ScriptContainment(mode: .subreaper, detail: "a subreaper supervisor per run", cgroupPath: nil)

    /// The (empty) cgroups of containments never deinitialized, a static or a worker still referenced at exit, go
    /// when the process exits normally; a worker's guard removes its cgroup whatever way the worker ended.
    private static func removeAtExit(_ path: String) {
        let first = cgroupsToRemove.withLock { paths in
            defer { paths.insert(path) }
            return paths.isEmpty
        }
        if first {
            atexit { cgroupsToRemove.withLock { $0.forEach { _ = rmdir($0) } } }
        }
    }

    /// Containment for this process's scripts. `.automatic`: a cgroup where this process may create one, else a
    /// subreaper; `.cgroup` fails with the reason when it cannot have one.
    public static func make(_ preference: Preference = .automatic) throws(TockError) -> ScriptContainment {
        if preference == .subreaper {
            return ScriptContainment(mode: .subreaper, detail: "a subreaper supervisor per run (asked for)", cgroupPath: nil)
        }
        switch createWorkerCgroup() {
        case .success(let path):
            return ScriptContainment(mode: .cgroup, detail: "a cgroup v2 per run under \(path), killed with cgroup.kill",
                                     cgroupPath: path)
        case .failure(let reason):
            if preference == .cgroup {
                throw TockError(.invalidInput, field: "containment",
                                "--containment cgroup: \(reason.message) (or use --containment auto)")
            }
            return ScriptContainment(mode: .subreaper, detail: "a subreaper supervisor per run (\(reason.message))",
                                     cgroupPath: nil)
        }
    }

    /// The containment a worker started here now would use, without keeping anything (for `tock doctor`).
    public static func probe() -> (mode: Mode, detail: String) {
        switch createWorkerCgroup(name: "tock-probe-\(getpid())") {
        case .success(let path):
            rmdir(path)
            return (.cgroup, "cgroup v2 per run (under \((path as NSString).deletingLastPathComponent), with cgroup.kill)")
        case .failure(let reason):
            return (.subreaper, "subreaper supervisor per run: \(reason.message)")
        }
    }

    deinit {
        // The worker's cgroup, once its runs are over (the guard removes it if the worker dies).
        if let cgroupPath {
            rmdir(cgroupPath)
            _ = cgroupsToRemove.withLock { $0.remove(cgroupPath) }
        }
    }

    /// A cgroup for one run, or nil in subreaper mode (or if it cannot be created: the run then has the
    /// subreaper's containment instead).
    func makeRunCgroup() -> RunCgroup? {
        guard let cgroupPath else { return nil }
        let path = cgroupPath + "/run-\(runs.add(1, ordering: .relaxed).newValue)"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { return nil }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            rmdir(path)
            return nil
        }
        return RunCgroup(path: path, fd: fd)
    }

    struct Failure: Error {
        var message: String
    }

    /// The cgroup directory of the worker `pid` on this host, if it runs in cgroup containment (for `tock doctor`).
    public static func workerCgroup(pid: pid_t) -> String? {
        guard let parent = ownCgroupDirectory(pid: String(pid)),
              let entries = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return nil }
        let name = "tock-worker-\(pid)"
        return entries.filter { $0 == name || $0.hasPrefix(name + "-") }.sorted().first.map { parent + "/" + $0 }
    }

    /// The cgroup2 mount and the process's cgroup in it (from /proc/self/mountinfo and /proc/PID/cgroup).
    static func ownCgroupDirectory(pid: String = "self") -> String? {
        guard let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8),
              let cgroups = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        // "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw": mount point, then after
        // the " - " separator the file system type.
        let mount = mountinfo.split(separator: "\n").lazy.compactMap { line -> String? in
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { return nil }
            let fields = halves[0].split(separator: " ")
            return fields.count > 4 ? String(fields[4]) : nil
        }.first
        // "0::/system.slice/tock-worker@01.service": the unified hierarchy's line.
        let own = cgroups.split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
        guard let mount, let own else { return nil }
        return own == "/" ? mount : mount + own
    }

    private static func createWorkerCgroup(name: String = "tock-worker-\(getpid())") -> Result<String, Failure> {
        guard let parent = ownCgroupDirectory() else {
            return .failure(Failure(message: "no cgroup2 file system is mounted"))
        }
        var path = parent + "/" + name
        var suffix = 0
        while mkdir(path, 0o755) != 0 {
            let error = errno
            // A directory left by an earlier process with this pid (a guard that was killed too): a name of our own.
            guard error == EEXIST, suffix < 100 else {
                return .failure(Failure(message: "cannot create a cgroup in \(parent): \(String(cString: strerror(error)))"))
            }
            suffix += 1
            path = parent + "/" + name + "-\(suffix)"
        }
        guard access(path + "/cgroup.kill", W_OK) == 0 else {
            rmdir(path)
            return .failure(Failure(message: "\(parent) has no cgroup.kill (Linux 5.14 or later has it)"))
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let rc = fd >= 0 ? tock_cgroup_probe(fd) : errno
        if fd >= 0 { close(fd) }
        guard rc == 0 else {
            rmdir(path)
            return .failure(Failure(message: "cannot start a process in a cgroup under \(parent): \(String(cString: strerror(rc)))"))
        }
        return .success(path)
    }
}

private let cgroupsToRemove = Mutex<Set<String>>([])

/// One run's cgroup: the script starts in it; at the run's end everything in it is killed and it is removed.
final class RunCgroup: @unchecked Sendable {  // used by one monitor thread at a time
    let path: String
    let fd: Int32

    init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    func signalAll(_ signal: Int32) { _ = tock_cgroup_signal(fd, signal) }

    func killAll() { _ = tock_cgroup_kill(fd) }

    /// Kills what is left, waits for it to be gone (2 s at most) and removes the cgroup.
    func remove() {
        killAll()
        _ = tock_cgroup_wait_empty(fd, 2000)
        close(fd)
        rmdir(path)
    }
}
