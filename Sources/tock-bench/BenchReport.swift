import Foundation
import TockCore

/// Nanoseconds of CLOCK_MONOTONIC, the clock tock-clock prints.
func monotonicNanos() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// Percentiles of a sample, in milliseconds.
struct Distribution: Encodable {
    var count: Int
    var minMs: Double
    var p50Ms: Double
    var p95Ms: Double
    var p99Ms: Double
    var maxMs: Double

    init(nanoseconds samples: [Int64]) {
        let sorted = samples.sorted().map { Double($0) / 1e6 }
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let rank = p * Double(sorted.count - 1)
            let low = Int(rank.rounded(.down)), high = Int(rank.rounded(.up))
            return sorted[low] + (sorted[high] - sorted[low]) * (rank - Double(low))
        }
        count = sorted.count
        minMs = sorted.first ?? .nan
        p50Ms = percentile(0.5)
        p95Ms = percentile(0.95)
        p99Ms = percentile(0.99)
        maxMs = sorted.last ?? .nan
    }

    var row: [String] { [minMs, p50Ms, p95Ms, p99Ms, maxMs].map { String(format: "%.2f", $0) } }
}

struct BenchReport: Encodable {
    struct Machine: Encodable {
        var cores: Int
        var memoryGiB: Double
        var kernel: String
        static func current() -> Machine {
            var name = utsname()
            uname(&name)
            let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return Machine(cores: ProcessInfo.processInfo.activeProcessorCount,
                           memoryGiB: (Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824 * 10).rounded() / 10,
                           kernel: release)
        }
    }
    struct Latency: Encodable {
        var toScriptRunning: Distribution
        var toClaimed: Distribution
        /// The same as toScriptRunning, run-now sent as `POST /api/v1/jobs/clock/trigger`.
        var toScriptRunningOverHTTP: Distribution
    }
    struct Rate: Encodable {
        var workers: Int
        var runs: Int
        var seconds: Double
        var runsPerSecond: Double
    }
    struct Throughput: Encodable {
        var tock: [Rate]
        /// The same number of processes spawned back to back by a plain loop (1 and 2 loops), without Tock.
        var rawSpawn: [Rate]
    }

    var machine: Machine
    var database: String
    var latency: Latency?
    var throughput: Throughput?
    var queue: [Rate]?
    /// schedule: how late each run started behind its fire time.
    var schedule: Distribution?
    var scale: Scale?
    var idle: [IdleProcess]?

    var text: String {
        var out = "tock-bench on \(machine.cores) cores, \(machine.memoryGiB) GiB, Linux \(machine.kernel); \(database)\n"
        if let latency {
            var table = TextTable("LATENCY (ms)", "N", "MIN", "P50", "P95", "P99", "MAX")
            table.append(["run-now → script running", "\(latency.toScriptRunning.count)"] + latency.toScriptRunning.row)
            table.append(["run-now → claimed (db clock)", "\(latency.toClaimed.count)"] + latency.toClaimed.row)
            table.append(["API run-now → script running", "\(latency.toScriptRunningOverHTTP.count)"]
                         + latency.toScriptRunningOverHTTP.row)
            out += "\n" + table.render() + "\n"
        }
        if let throughput {
            var table = TextTable("SCRIPT THROUGHPUT", "PROCESSES", "RUNS", "SECONDS", "RUNS/S", "OF RAW")
            for rate in throughput.tock {
                let raw = throughput.rawSpawn.first { $0.workers == rate.workers } ?? throughput.rawSpawn.last
                table.append(["tock (/bin/true)", "\(rate.workers)", "\(rate.runs)", String(format: "%.2f", rate.seconds),
                              String(format: "%.0f", rate.runsPerSecond),
                              raw.map { String(format: "%.0f%%", rate.runsPerSecond / $0.runsPerSecond * 100) } ?? "-"])
            }
            for rate in throughput.rawSpawn {
                table.append(["plain spawn loop", "\(rate.workers)", "\(rate.runs)", String(format: "%.2f", rate.seconds),
                              String(format: "%.0f", rate.runsPerSecond), ""])
            }
            out += "\n" + table.render() + "\n"
        }
        if let queue {
            var table = TextTable("QUEUE (no-op runs)", "PROCESSES", "RUNS", "SECONDS", "RUNS/S")
            for rate in queue {
                table.append(["tock", "\(rate.workers)", "\(rate.runs)", String(format: "%.2f", rate.seconds),
                              String(format: "%.0f", rate.runsPerSecond)])
            }
            out += "\n" + table.render() + "\n"
        }
        if let schedule {
            var table = TextTable("SCHEDULE LATENESS (ms)", "RUNS", "MIN", "P50", "P95", "P99", "MAX")
            table.append(["start behind fire time", "\(schedule.count)"] + schedule.row)
            out += "\n" + table.render() + "\n"
        }
        if let idle {
            var table = TextTable("IDLE", "SECONDS", "QUERIES", "EXPECTED", "RSS MIB")
            for process in idle {
                table.append([process.process, "\(process.seconds)", "\(process.transactions)", process.expected,
                              String(format: "%.1f", process.rssMegabytes)])
            }
            out += "\n" + table.render() + "\n"
        }
        if let scale {
            out += "\nSCALE: \(scale.jobs) jobs, \(scale.runs) runs of history (seeded in \(String(format: "%.0f", scale.seedSeconds)) s; "
                + "database \(scale.databaseSize)); each query timed \(scale.queries.first?.count ?? 0) times"
                + (scale.backlog > 0 ? "; the last ones with \(scale.backlog) runs pending\n" : "\n")
            var table = TextTable("QUERY", "CALLED BY", "ROWS", "P50 MS", "MAX MS", "")
            for query in scale.queries {
                let verdict = query.portal ? (query.p50Ms <= 50 ? "ok (< 50 ms)" : "SLOW (portal: < 50 ms)") : ""
                table.append([query.name, query.caller, "\(query.rows)", String(format: "%.2f", query.p50Ms),
                              String(format: "%.2f", query.maxMs), verdict])
            }
            out += table.render() + "\n"
        }
        return out
    }
}
