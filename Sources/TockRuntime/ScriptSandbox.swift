import Foundation
import TockCore

/// The scripts directory a worker may run from. A job's script must resolve, symlinks followed, to an
/// executable file inside it: absolute paths, `..` and symlinks that leave it are refused with the reason.
public struct ScriptSandbox: Sendable {
    /// The directory, with symlinks resolved.
    public let root: String

    public init(directory: String) throws(TockError) {
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
    }

    /// The real path of `script`, or an error saying why it may not run.
    public func resolve(_ script: String) throws(TockError) -> String {
        do {
            try ScriptPath.validate(script)
        } catch {
            throw TockError(.invalidInput, field: "script",
                            "script '\(script)' is outside the scripts directory \(root): \(error.message)")
        }
        let joined = root + "/" + script
        guard let resolved = Self.realPath(joined) else {
            throw TockError(.invalidInput, field: "script", "script '\(script)' does not exist in the scripts directory \(root)")
        }
        guard resolved.hasPrefix(root + "/") else {
            throw TockError(.invalidInput, field: "script",
                            "script '\(script)' is outside the scripts directory \(root) (it resolves to \(resolved))")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw TockError(.invalidInput, field: "script", "script '\(script)' is a directory, not a file")
        }
        guard access(resolved, X_OK) == 0 else {
            throw TockError(.invalidInput, field: "script", "script '\(script)' is not executable (chmod +x \(resolved))")
        }
        return resolved
    }

    static func realPath(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
