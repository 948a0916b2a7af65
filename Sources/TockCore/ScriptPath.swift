/// The syntactic sandbox rule for a job's script: a relative path with no `..` component.
/// (Symlinks that leave the scripts directory are caught where the file system is visible: `ScriptSandbox`.)
public enum ScriptPath {
    public static func validate(_ script: String) throws(InputError) {
        if script.isEmpty {
            throw InputError(field: "script", message: "the script path is empty")
        }
        if script.hasPrefix("/") {
            throw InputError(field: "script",
                             message: "'\(script)' is absolute; give a path relative to the worker's scripts directory")
        }
        if script.split(separator: "/", omittingEmptySubsequences: false).contains("..") {
            throw InputError(field: "script",
                             message: "'\(script)' contains '..'; scripts must stay inside the scripts directory")
        }
    }
}
