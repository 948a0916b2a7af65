import Foundation
import TockCore

/// The user scripts run as (`tock worker --run-as USER`): its uid, primary gid and supplementary groups, set in the
/// script's process (setgroups, setgid, setuid) before the exec. Only a worker started as root can switch users.
public struct ScriptCredentials: Sendable, Equatable {
    public var user: String
    public var uid: uid_t
    public var gid: gid_t
    public var groups: [gid_t]
    public var home: String

    /// The user's entry in the password database (a name, or a numeric uid) and its groups (initgroups' list).
    public static func lookup(_ user: String, workerUID: uid_t = getuid()) throws(TockError) -> ScriptCredentials {
        guard workerUID == 0 else {
            throw TockError(.invalidInput, field: "run_as", """
                --run-as \(user): only a worker started as root can run scripts as another user (this one runs as uid \
                \(workerUID)); start it as root, or drop --run-as and run the worker itself as \(user)
                """)
        }
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let rc = UInt32(user).map { getpwuid_r($0, &entry, &buffer, buffer.count, &found) }
            ?? getpwnam_r(user, &entry, &buffer, buffer.count, &found)
        guard rc == 0, found != nil else {
            throw TockError(.invalidInput, field: "run_as", "--run-as \(user): no such user (see getent passwd)")
        }
        let name = String(cString: entry.pw_name)
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        while getgrouplist(name, entry.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count) + 64)
            count = Int32(groups.count)
        }
        let credentials = ScriptCredentials(user: name, uid: entry.pw_uid, gid: entry.pw_gid,
                                            groups: Array(groups.prefix(Int(count))), home: String(cString: entry.pw_dir))
        guard credentials.uid != 0 else {
            throw TockError(.invalidInput, field: "run_as", "--run-as \(user): that is root; name an unprivileged user")
        }
        return credentials
    }
}
