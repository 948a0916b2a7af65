import Foundation

/// A file another process appends lines to, read as it grows: each read returns the whole lines added since the
/// last, and keeps a partial last line until the rest of it arrives.
struct FileTail {
    let path: String
    private(set) var offset: UInt64 = 0
    private var partial: [UInt8] = []

    init(path: String) { self.path = path }

    /// Calls `line` with the numbers of each new line (space-separated integers; anything else reads as 0).
    mutating func read(_ line: ([Int64]) -> Void) {
        guard let handle = FileHandle(forReadingAtPath: path) else { return }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd(), !data.isEmpty else { return }
        offset += UInt64(data.count)
        var bytes = partial
        bytes.append(contentsOf: data)
        var fields: [Int64] = []
        var value: Int64 = 0
        var negative = false
        var inNumber = false
        var lineStart = 0
        for (index, byte) in bytes.enumerated() {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                value = value &* 10 &+ Int64(byte - UInt8(ascii: "0"))
                inNumber = true
            case UInt8(ascii: "-"):
                negative = true
            case UInt8(ascii: " "), UInt8(ascii: "\n"):
                if inNumber || negative { fields.append(negative ? -value : value) }
                value = 0
                negative = false
                inNumber = false
                if byte == UInt8(ascii: "\n") {
                    line(fields)
                    fields.removeAll(keepingCapacity: true)
                    lineStart = index + 1
                }
            default:
                break
            }
        }
        partial = Array(bytes[lineStart...])
    }
}

/// A set of run ids as bits, for ids up to a few hundred million: a soak's tens of millions of runs in a few MB.
struct RunBitmap {
    private var words: [UInt64] = []

    /// Adds `id`; false if it was there already.
    mutating func insert(_ id: Int64) -> Bool {
        guard id >= 0 else { return false }
        let word = Int(id >> 6), bit = UInt64(1) << UInt64(id & 63)
        if word >= words.count { words.append(contentsOf: repeatElement(0, count: max(word + 1 - words.count, words.count))) }
        defer { words[word] |= bit }
        return words[word] & bit == 0
    }
}

/// What the soak's files say ran, from outside the database: the no-op workers' logs (`<run> <job> <fire ms>` per
/// run they finished at once) and the script's (`<run> <CLOCK_MONOTONIC>` per run-now that reached its script).
/// Read as they grow, every sample and while the soak waits for its last runs.
final class SoakLedger {
    private var workerLogs: [FileTail]
    private var scriptLog: FileTail
    let loadJob: Int64
    let scheduledJobs: Set<Int64>

    /// Every run id any log recorded, and those recorded more than once.
    private var seen = RunBitmap()
    private(set) var doubled: [Int64] = []
    private(set) var loadRecorded = 0
    /// Fire times (ms since 1970) recorded per scheduled job, in the order they came.
    private(set) var fires: [Int64: [Int64]] = [:]
    /// Runs of jobs the soak did not create, or of the script job through a no-op worker.
    private(set) var strays: [Int64] = []
    /// Run-now id → the script's clock readings (more than one: the script ran more than once).
    private(set) var scriptRuns: [Int64: [Int64]] = [:]

    /// Since the last `takeNew()`.
    private var newScheduleRuns: [Int64] = []
    private var newScriptReadings: [(run: Int64, reading: Int64)] = []
    private var newRecords = 0

    init(workerLogs: [String], scriptLog: String, loadJob: Int64, scheduledJobs: Set<Int64>) {
        self.workerLogs = workerLogs.map(FileTail.init)
        self.scriptLog = FileTail(path: scriptLog)
        self.loadJob = loadJob
        self.scheduledJobs = scheduledJobs
    }

    func read() {
        for index in workerLogs.indices {
            workerLogs[index].read { fields in
                guard fields.count == 3 else { return strays.append(fields.first ?? -1) }
                let (run, job, fire) = (fields[0], fields[1], fields[2])
                newRecords += 1
                if !seen.insert(run) { doubled.append(run) }
                if job == loadJob {
                    loadRecorded += 1
                } else if scheduledJobs.contains(job), fire > 0 {
                    fires[job, default: []].append(fire)
                    newScheduleRuns.append(run)
                } else {
                    strays.append(run)
                }
            }
        }
        scriptLog.read { fields in
            guard fields.count == 2 else { return strays.append(fields.first ?? -1) }
            newRecords += 1
            if !seen.insert(fields[0]) { doubled.append(fields[0]) }
            scriptRuns[fields[0], default: []].append(fields[1])
            newScriptReadings.append((fields[0], fields[1]))
        }
    }

    /// What was recorded since the last call: the scheduled runs, the script's readings, and how many records.
    func takeNew() -> (scheduleRuns: [Int64], scriptReadings: [(run: Int64, reading: Int64)], records: Int) {
        defer {
            newScheduleRuns.removeAll(keepingCapacity: true)
            newScriptReadings.removeAll(keepingCapacity: true)
            newRecords = 0
        }
        return (newScheduleRuns, newScriptReadings, newRecords)
    }

    var recordedFires: Int { fires.values.reduce(0) { $0 + $1.count } }
}

/// How the fire times one job should have had compare with those its runs were recorded for.
struct FireTimeCheck {
    var expected = 0
    var missing: [(job: Int64, fire: Int64)] = []
    var doubled: [(job: Int64, fire: Int64)] = []
    var unexpected: [(job: Int64, fire: Int64)] = []

    /// `expected` and `recorded` per job, fire times in ms; recorded fire times after `cutoff` are left out (the
    /// soak stopped waiting for them).
    static func compare(expected: [Int64: [Int64]], recorded: [Int64: [Int64]], cutoff: Int64) -> FireTimeCheck {
        var check = FireTimeCheck()
        for job in Set(expected.keys).union(recorded.keys).sorted() {
            let want = (expected[job] ?? []).sorted()
            let got = (recorded[job] ?? []).filter { $0 <= cutoff }.sorted()
            check.expected += want.count
            var w = 0, g = 0
            while w < want.count || g < got.count {
                if g > 0, g < got.count, got[g] == got[g - 1] {
                    check.doubled.append((job, got[g]))
                    g += 1
                } else if g < got.count, w < want.count, got[g] == want[w] {
                    w += 1
                    g += 1
                } else if w < want.count, g == got.count || want[w] < got[g] {
                    check.missing.append((job, want[w]))
                    w += 1
                } else {
                    check.unexpected.append((job, got[g]))
                    g += 1
                }
            }
        }
        return check
    }
}
