import Foundation

/// What a script printed, capped: keeps the last `capacity` bytes and counts all of them, so a chatty
/// script never holds more than the cap in memory. Text is made safe for PostgreSQL: invalid UTF-8
/// becomes U+FFFD and NUL bytes (which `text` cannot hold) become U+FFFD too.
public struct OutputTail: Sendable {
    public let capacity: Int
    public private(set) var totalBytes: Int = 0
    private var ring: [UInt8] = []
    private var start = 0  // index of the oldest byte once the ring is full

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var truncated: Bool { totalBytes > capacity }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        totalBytes += bytes.count
        for byte in bytes.suffix(capacity) {
            if ring.count < capacity {
                ring.append(byte)
            } else {
                ring[start] = byte
                start = (start + 1) % capacity
            }
        }
    }

    /// The kept bytes in order.
    public var bytes: [UInt8] { Array(ring[start...] + ring[..<start]) }

    /// The kept bytes as text. When the head was cut, a UTF-8 sequence split by the cut is dropped.
    public var text: String {
        var kept = bytes[...]
        if truncated {
            while let first = kept.first, first & 0b1100_0000 == 0b1000_0000 { kept = kept.dropFirst() }
        }
        return String(decoding: kept, as: UTF8.self).replacingOccurrences(of: "\u{0}", with: "\u{FFFD}")
    }
}

