import Foundation
import TockCore

/// A minimal HTTP/1.1 client on one keep-alive loopback connection, for `tock-bench latency` to time run-now
/// through the API the way the portal sends it (no client library in the way, no process per request).
final class BenchHTTPConnection {
    let fd: Int32
    let port: Int

    init(port: Int) throws {
        self.port = port
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TockError(.failed, "bench: socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TockError(.unavailable, "bench: cannot connect to the API on 127.0.0.1:\(port): \(reason)")
        }
    }

    deinit { close(fd) }

    /// Sends one request and reads the whole response (Content-Length bodies only, which is what Tock sends
    /// for JSON). Returns the status code and body.
    func request(_ method: String, _ path: String) throws -> (status: Int, body: String) {
        // Writes say JSON, as the API requires of every one (the portal sends the same).
        let type = method == "GET" || method == "HEAD" ? "" : "Content-Type: application/json\r\n"
        let head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\(type)Content-Length: 0\r\n\r\n"
        var bytes = Array(head.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeMutableBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TockError(.unavailable, "bench: the API closed the connection") }
            sent += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            if let end = Self.headerEnd(received) {
                let header = String(decoding: received[..<end], as: UTF8.self)
                let status = Int(header.split(separator: " ").dropFirst().first ?? "") ?? 0
                let length = header.split(separator: "\r\n").compactMap { line -> Int? in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                    return Int(parts[1].trimmingCharacters(in: .whitespaces))
                }.first ?? 0
                if received.count >= end + 4 + length {
                    bytes = Array(received[(end + 4)..<(end + 4 + length)])
                    return (status, String(decoding: bytes, as: UTF8.self))
                }
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { throw TockError(.unavailable, "bench: the API closed the connection") }
            received += buffer[0..<n]
        }
    }

    static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4) where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }

    /// A TCP port free on loopback right now (the kernel's pick), for the benchmark's API process.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw TockError(.failed, "bench: no free loopback port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
