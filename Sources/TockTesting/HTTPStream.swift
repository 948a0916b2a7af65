import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TockCore

/// One HTTP/1.1 connection to 127.0.0.1, the request written exactly as given, and everything the server sends
/// collected as it comes: for a response that never ends (Server-Sent Events) as for one that does. The socket is
/// read on a thread of its own: blocking calls on the cooperative pool would starve the server under test.
public final class HTTPStream: Sendable {
    private let received = Locked<[UInt8]>([])
    private let ended = Locked(false)
    private let stopping = Locked(false)

    private init() {}

    /// Connects to `port`, sends `request`, and reads until the server closes the connection or `close()`.
    public static func open(port: Int, _ request: String) async throws -> HTTPStream {
        let stream = HTTPStream()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread.detachNewThread {
                let fd: Int32
                do {
                    fd = try connect(port: port)
                    try send(fd, request)
                } catch {
                    stream.ended.set(true)
                    continuation.resume(throwing: error)
                    return
                }
                continuation.resume()
                var buffer = [UInt8](repeating: 0, count: 65536)
                while !stream.stopping.value {
                    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&poller, 1, 50) >= 0 else { break }
                    if poller.revents == 0 { continue }
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n <= 0 { break }
                    stream.received.withLock { $0 += buffer[0..<n] }
                }
                Glibc.close(fd)
                stream.ended.set(true)
            }
        }
        return stream
    }

    /// The request sent on a new connection, and the whole response once the server closed it (send
    /// `Connection: close`), or what came within `timeout`.
    public static func exchange(port: Int, _ request: String, timeout: Duration = .seconds(10)) async throws -> String {
        let stream = try await open(port: port, request)
        _ = try await eventually(timeout: timeout, interval: .milliseconds(10)) { stream.isClosed }
        await stream.close()
        return stream.text
    }

    /// Everything received so far.
    public var text: String { String(decoding: received.value, as: UTF8.self) }
    /// The status code of the response, once its first line is in (0 before).
    public var status: Int { Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0 }
    /// Whether the connection is closed (by the server, or by `close()`).
    public var isClosed: Bool { ended.value }

    /// Closes the connection, and returns once the reading thread let go of it.
    public func close() async {
        stopping.set(true)
        _ = try? await eventually(timeout: .seconds(5), interval: .milliseconds(10)) { self.ended.value }
    }

    private static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TockError(.unavailable, "connect 127.0.0.1:\(port): \(reason)")
        }
        return fd
    }

    private static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TockError(.unavailable, "send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }
}
