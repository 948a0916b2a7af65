import Foundation
import Synchronization
import TockCore

/// Ports for the servers tests start, one allocator for the whole test process. Below the kernel's ephemeral range
/// (32768-60999 by default), which outgoing connections (to PostgreSQL over TCP, to the servers themselves) take
/// ports from at any moment; handed out in turn from a random start, so two tests of one process never get the same
/// port, and two processes rarely meet; each is bound once and released when handed out, so it is free then.
/// Random picks from one range collided: a scheduler's metrics port was already the worker's beside it.
public enum TestPorts {
    static let range = 20000..<32000
    static let next = Mutex(Int.random(in: range))

    /// A port on 127.0.0.1 that nothing listened on a moment ago and no other caller in this process was given.
    public static func free() throws -> Int {
        for _ in 0..<range.count {
            let port = next.withLock { next in
                defer { next = next + 1 < range.upperBound ? next + 1 : range.lowerBound }
                return next
            }
            if bindable(port) { return port }
        }
        throw TockError(.failed, "no free port on 127.0.0.1 in \(range.lowerBound)-\(range.upperBound - 1)")
    }

    /// Whether something accepts connections on 127.0.0.1:`port` now.
    public static func accepts(_ port: Int) -> Bool {
        onLoopback(port) { fd, address, length in connect(fd, address, length) == 0 }
    }

    private static func bindable(_ port: Int) -> Bool {
        onLoopback(port) { fd, address, length in bind(fd, address, length) == 0 }
    }

    /// `call` with a new TCP socket and 127.0.0.1:`port`; the socket is closed after.
    private static func onLoopback(_ port: Int, _ call: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Bool) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
