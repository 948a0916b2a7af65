import CTockSpawn
import Foundation

/// What a service process holds that its scripts must not read: the database credentials and API tokens it was
/// started with. Once read (the connection settings, the API's tokens), `forget()` takes them out of the
/// environment and overwrites their bytes where /proc/PID/environ and /proc/PID/cmdline show them, and makes the
/// process non-dumpable, so /proc/PID/environ, /proc/PID/mem and ptrace are out of reach of processes of the same
/// user (a script running as root can still read everything: `--run-as`).
public enum ProcessSecrets {
    /// Variables that hold credentials: removed whatever their value.
    public static let variables = ["DATABASE_URL", "PGPASSWORD", "TOCK_API_TOKENS"]

    /// Whether `name` holds a secret: the fixed list, and TOCK_* names that say so.
    public static func isSecret(_ name: String) -> Bool {
        if variables.contains(name) { return true }
        guard name.hasPrefix("TOCK_") else { return false }
        return ["TOKEN", "PASSWORD", "SECRET", "DATABASE_URL", "_KEY"].contains { name.contains($0) }
    }

    /// Forgets this process's secrets (see the type); returns the names of the variables it removed.
    @discardableResult
    public static func forget() -> [String] {
        let names = ProcessInfo.processInfo.environment.keys.filter(isSecret).sorted()
        let copies = names.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        _ = copies.map { UnsafePointer($0) }.withUnsafeBufferPointer { tock_scrub_environment($0.baseAddress, Int32($0.count)) }
        // --database-url postgres://user:password@… is on the command line, which every user can read.
        let argc = Int(CommandLine.argc)
        let argv = CommandLine.unsafeArgv
        for index in 0..<argc {
            guard let argument = argv[index] else { continue }
            let text = String(cString: argument)
            if text == "--database-url", index + 1 < argc {
                tock_scrub_bytes(argv[index + 1])
            } else if text.hasPrefix("--database-url=") {
                tock_scrub_bytes(argument + "--database-url=".utf8.count)
            }
        }
        _ = tock_set_dumpable(0)
        return names
    }
}
