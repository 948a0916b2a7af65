import Foundation
import TockCore

/// The soak's figures, interval by interval, and what they were judged by.
struct SoakReport: Encodable {
    struct Setup: Encodable {
        var minutes: Double
        var intervalSeconds: Int
        var warmupSeconds: Int
        var jobs: Int
        /// The scheduled jobs' schedules, each with how many jobs have it.
        var schedules: [ScheduleMix]
        /// The no-op drain's rate with the soak's workers, before the soak (nil: --load was given).
        var capacityRunsPerSecond: Double?
        var loadRunsPerSecond: Double
        var runNowMs: Int
        var workers: Int
        var schedulers: Int
        var concurrency: Int
        var retention: String
        /// Finished runs live in partitioned tables (true), or in tock.runs with the queue (false).
        var historyPartitioned: Bool
        var notes: [String]
        var machine: BenchReport.Machine
        var database: String
    }
    struct ScheduleMix: Encodable {
        var schedule: String
        var jobs: Int
    }
    /// A table (partitions summed under their parent) or an index, at one sample.
    struct Relation: Encodable {
        var name: String
        /// table, partitioned table, index
        var kind: String
        /// The table an index belongs to.
        var table: String?
        /// A table's pg_total_relation_size (with its indexes and TOAST), an index's pg_relation_size.
        var bytes: Int64
        var deadTuples: Int64
        var liveTuples: Int64
        var partitions: Int
    }
    struct ProcessSample: Encodable {
        var name: String
        var pid: Int32
        var rssMegabytes: Double
    }
    struct Interval: Encodable {
        var index: Int
        /// Minutes since the soak started, at the end of the interval.
        var minute: Double
        /// Runs the workers reported finished (tock.workers.runs_processed), per second.
        var runsPerSecond: Double
        /// Runs recorded in the workers' and the script's files, per second.
        var recordedPerSecond: Double
        var runNows: Int
        var toScriptP50Ms: Double?
        var toScriptP99Ms: Double?
        var toClaimedP50Ms: Double?
        var toClaimedP99Ms: Double?
        var scheduleRuns: Int
        var latenessP50Ms: Double?
        var latenessP99Ms: Double?
        /// Pending runs (tock.lag), with the scheduled runs enqueued ahead of their fire time.
        var queueWaiting: Int64
        /// Runs the workers hold (tock.worker_overview.running): claimed, their end not yet recorded.
        var queueRunning: Int64
        var walBytes: Int64
        var relations: [Relation]
        var processes: [ProcessSample]
    }
    /// Which intervals the comparisons read: after the warm-up, the first and the last window of equal length.
    struct Windows: Encodable {
        var warmupIntervals: Int
        var first: Range<Int>
        var last: Range<Int>
        var firstMinutes: String
        var lastMinutes: String
    }
    /// A figure in the first window beside the same in the last.
    struct Comparison: Encodable {
        var name: String
        var unit: String
        /// nil: no sample in the window.
        var first: Double?
        var last: Double?
        /// The check that judges it, if one does.
        var check: String?
    }
    struct Check: Encodable {
        var name: String
        /// timing, growth, memory or loss: --checks picks the kinds that decide the exit status.
        var kind: String
        var enforced: Bool
        var passed: Bool
        var detail: String
    }

    var setup: Setup
    var windows: Windows
    var intervals: [Interval]
    var comparisons: [Comparison]
    var checks: [Check]
    var passed: Bool

    /// The enforced checks that failed.
    var failures: [Check] { checks.filter { $0.enforced && !$0.passed } }

    var text: String {
        let s = setup
        var out = "tock-bench soak: \(format(s.minutes)) min on \(s.machine.cores) cores, Linux \(s.machine.kernel); \(s.database)\n"
        out += "\(s.jobs) scheduled jobs (" + s.schedules.map { "\($0.jobs) × \($0.schedule)" }.joined(separator: ", ") + "); "
        out += "no-op load \(Int(s.loadRunsPerSecond.rounded())) runs/s"
        if let capacity = s.capacityRunsPerSecond { out += " (half of the \(Int(capacity.rounded())) runs/s measured)" }
        out += "; a run-now of a script every \(s.runNowMs) ms; \(s.workers) workers × \(s.concurrency), \(s.schedulers) schedulers; "
        out += "retention \(s.retention); history \(s.historyPartitioned ? "partitioned" : "in tock.runs")\n"
        for note in s.notes { out += "note: \(note)\n" }
        var table = TextTable("FIRST VS LAST", "UNIT", "MINUTES \(windows.firstMinutes)", "MINUTES \(windows.lastMinutes)", "LAST ÷ FIRST")
        for comparison in comparisons {
            var ratio = "-"
            if let first = comparison.first, let last = comparison.last, first > 0 { ratio = String(format: "%.2f×", last / first) }
            table.append([comparison.name, comparison.unit, comparison.first.map(format) ?? "-", comparison.last.map(format) ?? "-", ratio])
        }
        out += "\n" + table.render() + "\n"
        var checkTable = TextTable("CHECK", "KIND", "RESULT", "DETAIL")
        for check in checks {
            checkTable.append([check.name, check.kind, check.passed ? "ok" : (check.enforced ? "FAILED" : "failed (not enforced)"),
                               check.detail])
        }
        out += "\n" + checkTable.render() + "\n"
        out += passed ? "\nsoak passed\n" : "\nsoak FAILED: \(failures.map(\.name).joined(separator: ", "))\n"
        return out
    }

    /// One row per interval: the timings, rates, WAL, every relation's bytes and each process's RSS.
    var csv: String {
        let relations = Self.names(intervals.flatMap { $0.relations.map(\.name) })
        let processes = Self.names(intervals.flatMap { $0.processes.map(\.name) })
        var header = ["minute", "runs_per_second", "recorded_per_second", "run_nows", "to_script_p50_ms", "to_script_p99_ms",
                      "to_claimed_p50_ms", "to_claimed_p99_ms", "schedule_runs", "lateness_p50_ms", "lateness_p99_ms",
                      "queue_waiting", "queue_running", "wal_bytes"]
        header += relations.map { "bytes:\($0)" } + relations.map { "dead_tuples:\($0)" } + processes.map { "rss_mib:\($0)" }
        var lines = [header.joined(separator: ",")]
        for interval in intervals {
            func value(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "" }
            var row = [String(format: "%.2f", interval.minute), value(interval.runsPerSecond), value(interval.recordedPerSecond),
                       "\(interval.runNows)", value(interval.toScriptP50Ms), value(interval.toScriptP99Ms),
                       value(interval.toClaimedP50Ms), value(interval.toClaimedP99Ms), "\(interval.scheduleRuns)",
                       value(interval.latenessP50Ms), value(interval.latenessP99Ms), "\(interval.queueWaiting)",
                       "\(interval.queueRunning)", "\(interval.walBytes)"]
            let byName = Dictionary(interval.relations.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            row += relations.map { byName[$0].map { "\($0.bytes)" } ?? "" }
            row += relations.map { byName[$0].map { "\($0.deadTuples)" } ?? "" }
            let rss = Dictionary(interval.processes.map { ($0.name, $0.rssMegabytes) }, uniquingKeysWith: { first, _ in first })
            row += processes.map { value(rss[$0]) }
            lines.append(row.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Distinct, in the order first seen.
    static func names(_ all: [String]) -> [String] {
        var seen = Set<String>()
        return all.filter { seen.insert($0).inserted }
    }
}

/// `value` with as many decimals as it needs to be read: 12,345 / 123.4 / 1.23.
func format(_ value: Double) -> String {
    guard value.isFinite else { return "-" }
    switch abs(value) {
    case 1000...: return grouped(Int64(value.rounded()))
    case 100...: return String(format: "%.1f", value)
    default: return String(format: "%.2f", value)
    }
}

/// 1234567 → "1,234,567".
func grouped(_ value: Int64) -> String {
    let digits = String(value.magnitude)
    var out = ""
    for (index, digit) in digits.enumerated() {
        if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(digit)
    }
    return (value < 0 ? "-" : "") + out
}

/// Percentile `p` (0-1) of nanosecond samples, in milliseconds; nil without samples.
func percentileMs(_ samples: [Int64], _ p: Double) -> Double? {
    guard !samples.isEmpty else { return nil }
    let sorted = samples.sorted()
    let rank = p * Double(sorted.count - 1)
    let low = Int(rank.rounded(.down)), high = Int(rank.rounded(.up))
    let value = Double(sorted[low]) + Double(sorted[high] - sorted[low]) * (rank - Double(low))
    return value / 1e6
}
