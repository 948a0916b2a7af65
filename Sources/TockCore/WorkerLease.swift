/// The secret a worker registers with and presents on every call that acts as it (claim, heartbeat, finish, …):
/// a worker's id is visible to anyone who reads the views, so the id alone must not let another login act as it.
/// The database keeps only its SHA-256 (tock.register_worker).
public enum WorkerLease {
    /// 32 bytes from the system's random source (getrandom), as 64 hex digits.
    public static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let word = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - word.count) + word
        }.joined()
    }
}
