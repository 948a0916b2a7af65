import CTockSpawn
import Foundation
import TockCore

/// A script opened beneath the scripts directory: the descriptor is what runs (execveat), so a file swapped in after
/// the checks is never the one executed. Closed when the value goes.
public final class ScriptFile: Sendable {
    public let fd: Int32
    /// Where it was found (its real path), for logs and messages only: never opened again by this name.
    public let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }
}

/// The scripts directory a worker may run from. A job's script is opened beneath it with openat2(RESOLVE_BENEATH),
/// which follows symlinks only while they stay inside: absolute paths, `..` and symlinks that leave it are refused
/// with the reason, and the open file is what runs.
public struct ScriptSandbox: Sendable {
    /// The directory, with symlinks resolved.
    public let root: String
    /// Test hook: the walk used where openat2 is missing (ENOSYS), one component at a time with O_NOFOLLOW.
    let walkOnly: Bool

    public init(directory: String) throws(TockError) {
        try self.init(directory: directory, walkOnly: false)
    }

    init(directory: String, walkOnly: Bool) throws(TockError) {
        let absolute = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard let resolved = Self.realPath(absolute) else {
            throw TockError(.invalidInput, field: "scripts_dir",
                            "the scripts directory \(absolute) does not exist (create it, or pass --scripts-dir)")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TockError(.invalidInput, field: "scripts_dir", "the scripts directory \(absolute) is not a directory")
        }
        root = resolved
        self.walkOnly = walkOnly
    }

    /// Opens `script` beneath the directory, or says why it may not run.
    public func open(_ script: String) throws(TockError) -> ScriptFile {
        do {
            try ScriptPath.validate(script)
        } catch {
            throw TockError(.invalidInput, field: "script",
                            "script '\(script)' is outside the scripts directory \(root): \(error.message)")
        }
        let directory = tock_open_directory(root)
        guard directory >= 0 else {
            throw TockError(.failed, "the scripts directory \(root) cannot be opened: \(String(cString: strerror(errno)))")
        }
        defer { close(directory) }
        var fd: Int32 = -1
        let rc = tock_open_beneath(directory, script, walkOnly ? 1 : 0, &fd)
        guard rc == 0 else { throw refusal(script, errno: rc) }
        let file = ScriptFile(fd: fd, path: Self.realPath("/proc/self/fd/\(fd)") ?? root + "/" + script)
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw TockError(.failed, "script '\(script)' cannot be read: \(String(cString: strerror(errno)))")
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            break
        case S_IFDIR:
            throw TockError(.invalidInput, field: "script", "script '\(script)' is a directory, not a file")
        default:
            throw TockError(.invalidInput, field: "script", "script '\(script)' is not a regular file")
        }
        guard info.st_mode & 0o111 != 0 else {
            throw TockError(.invalidInput, field: "script", "script '\(script)' is not executable (chmod +x \(file.path))")
        }
        return file
    }

    /// The real path of `script` once opened as `open` does, or an error saying why it may not run.
    public func resolve(_ script: String) throws(TockError) -> String {
        try open(script).path
    }

    private func refusal(_ script: String, errno rc: Int32) -> TockError {
        switch rc {
        case EXDEV:
            // Named for the reader only: where the link leads now is not what decided.
            let target = Self.realPath(root + "/" + script).map { " (it resolves to \($0))" } ?? ""
            return TockError(.invalidInput, field: "script",
                             "script '\(script)' is outside the scripts directory \(root)\(target); scripts and the symlinks to them must stay inside it")
        case ELOOP where walkOnly:
            return TockError(.invalidInput, field: "script", """
                script '\(script)' is reached through a symlink, which this kernel cannot follow safely (openat2 needs \
                Linux 5.6): replace the symlink in \(root) with the file itself
                """)
        case ENOENT, ENOTDIR:
            return TockError(.invalidInput, field: "script", "script '\(script)' does not exist in the scripts directory \(root)")
        case EACCES:
            return TockError(.invalidInput, field: "script",
                             "script '\(script)' cannot be read by the worker (let the worker's user read \(root)/\(script))")
        default:
            return TockError(.invalidInput, field: "script",
                             "script '\(script)' cannot be opened in the scripts directory \(root): \(String(cString: strerror(rc)))")
        }
    }

    static func realPath(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
