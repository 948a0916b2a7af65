import Foundation
import TockCore

/// A TCP server on 127.0.0.1 that plays one part of PostgreSQL's startup, on a thread of its own (never the
/// cooperative pool's): `.refuseTLS` answers an SSLRequest with 'N' as a server without TLS does; `.silent`
/// accepts and never answers.
public final class FakePostgres: @unchecked Sendable {
    public enum Behaviour: Sendable { case refuseTLS, silent }
    public let port: Int
    private let listener: Int32

    public init(_ behaviour: Behaviour) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(listener, raw, length) == 0 && listen(listener, 16) == 0 && getsockname(listener, raw, &length) == 0
            }
        }
        guard bound else { throw TockError(.failed, "fake server: cannot listen (errno \(errno))") }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread {
            var held: [Int32] = []
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }  // closed
                if behaviour == .refuseTLS {
                    var request = [UInt8](repeating: 0, count: 8)
                    _ = read(client, &request, 8)
                    _ = write(client, "N", 1)
                }
                held.append(client)  // silent: kept open, never answered
            }
        }
    }

    deinit { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }
}
