import Foundation

/// Who a change is made for, as the audit log records it (`tock.audit_actor`): `api:<token name>` for an API
/// request, `cli:<OS user>` for a CLI call. The API's access check sets it for the request it lets through; the
/// database layer sends it with every write, in the write's transaction.
public enum AuditActor {
    @TaskLocal public static var current: String?

    /// The actor of a CLI call: `cli:` and the name of this process's real user.
    public static func cli() -> String {
        var name = "uid \(getuid())"
        if let entry = getpwuid(getuid()), let login = entry.pointee.pw_name {
            name = String(cString: login)
        }
        return "cli:\(name)"
    }
}
