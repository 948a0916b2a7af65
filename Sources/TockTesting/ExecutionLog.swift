import Foundation

/// A file every execution of a script appends one line to: `<run id> <attempt> <fire time or ->`. What ran,
/// counted from the scripts themselves: a run's row in tock.runs holds only its last execution (a second one
/// overwrites the output and times of the first), so "none ran twice" needs the scripts' own record.
/// One `echo` of a short line to a file opened with O_APPEND (`>>`) is one write(2): lines never interleave.
public struct ExecutionLog: Sendable {
    public let path: String

    public init(_ name: String) {
        path = NSTemporaryDirectory() + "tock-executions-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// The shell line a script runs to record its execution.
    public var record: String {
        #"echo "$TOCK_RUN_ID $TOCK_ATTEMPT ${TOCK_SCHEDULED_FOR:--}" >> "# + path
    }

    public struct Entry: Sendable, Hashable {
        public var run: Int64
        public var attempt: Int
        public var scheduledFor: String
    }

    /// The whole lines written so far (a line still being written is left out).
    public func entries() -> [Entry] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: true).dropLast(text.hasSuffix("\n") ? 0 : 1)
            .compactMap { line in
                let fields = line.split(separator: " ")
                guard fields.count == 3, let run = Int64(fields[0]), let attempt = Int(fields[1]) else { return nil }
                return Entry(run: run, attempt: attempt, scheduledFor: String(fields[2]))
            }
    }

    /// How many times each run's script started.
    public func executionsPerRun() -> [Int64: Int] {
        entries().reduce(into: [:]) { $0[$1.run, default: 0] += 1 }
    }

    /// The runs whose script started more than once, with how many times.
    public func repeatedRuns() -> [Int64: Int] {
        executionsPerRun().filter { $0.value > 1 }
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
