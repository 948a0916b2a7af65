import Foundation
import Prometheus
import Synchronization
import TockCore

/// What this process measures, in a Prometheus registry that `GET /metrics` prints. Workers count runs started
/// and finished, their durations and how late scheduled runs started; schedulers count ticks, rescues and purges.
/// Figures only the database knows (queue depth, workers alive) are read at scrape time: see `refresh(gauges:)`.
public final class TockMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Database gauges set by the last refresh, so one that disappears (a priority nobody waits at) drops to 0.
    private let databaseGauges = Mutex<Set<GaugeKey>>([])

    struct GaugeKey: Hashable {
        var name: String
        var help: String
        var labels: [String]
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// Seconds, from a fast no-op to a long report.
    static let durationBuckets: [Duration] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]
        .map { Duration.milliseconds(Int64($0 * 1000)) }
    static let latenessBuckets: [Duration] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60]
        .map { Duration.microseconds(Int64($0 * 1_000_000)) }

    // MARK: Worker

    /// The worker's per-run metrics, made once per job (and status): the registry checks a metric's name and help
    /// text on every make call, which with three calls per run is a large share of a worker's CPU on short runs.
    private struct JobMetrics: Sendable {
        let started: Counter
        let duration: DurationHistogram
        var finished: [String: Counter] = [:]
    }

    private let jobMetrics = Mutex<[String: JobMetrics]>([:])
    private let workerMetrics = Mutex<(running: Gauge?, lateness: DurationHistogram?)>((nil, nil))

    private func withJobMetrics<T>(_ job: String, _ body: (inout JobMetrics) -> T) -> T {
        jobMetrics.withLock { metrics in
            if metrics[job] == nil {
                metrics[job] = JobMetrics(
                    started: registry.makeCounter(name: "tock_runs_started_total", labels: [("job", job)],
                                                  help: "Runs this worker started, by job."),
                    duration: registry.makeDurationHistogram(name: "tock_run_duration_seconds", labels: [("job", job)],
                                                             buckets: Self.durationBuckets, help: "How long runs took, by job."))
            }
            return body(&metrics[job]!)
        }
    }

    public func runStarted(job: String, trigger: String, scheduledFor: Date?) {
        withJobMetrics(job) { $0.started }.increment()
        if trigger == "schedule", let scheduledFor {
            let late = max(Date().timeIntervalSince(scheduledFor), 0)
            let lateness = workerMetrics.withLock { metrics in
                if metrics.lateness == nil {
                    metrics.lateness = registry.makeDurationHistogram(
                        name: "tock_schedule_lateness_seconds", buckets: Self.latenessBuckets,
                        help: "How long after its fire time a scheduled run started.")
                }
                return metrics.lateness!
            }
            lateness.record(.microseconds(Int64(late * 1_000_000)))
        }
    }

    public func runFinished(job: String, status: String, duration: Duration) {
        let (finished, histogram) = withJobMetrics(job) { metrics in
            if metrics.finished[status] == nil {
                metrics.finished[status] = registry.makeCounter(
                    name: "tock_runs_finished_total", labels: [("job", job), ("status", status)],
                    help: "Runs this worker finished, by job and status.")
            }
            return (metrics.finished[status]!, metrics.duration)
        }
        finished.increment()
        histogram.record(duration)
    }

    public func runsInFlight(_ count: Int) {
        let running = workerMetrics.withLock { metrics in
            if metrics.running == nil {
                metrics.running = registry.makeGauge(name: "tock_worker_running_runs", help: "Scripts this worker is running now.")
            }
            return metrics.running!
        }
        running.set(to: Double(count))
    }

    // MARK: Scheduler

    public func ticked() {
        registry.makeCounter(name: "tock_scheduler_ticks_total", help: "Calls of tock.tick() by this scheduler.").increment()
        registry.makeGauge(name: "tock_scheduler_last_tick_timestamp_seconds",
                           help: "When this scheduler last called tock.tick() (Unix time).")
            .set(to: Date().timeIntervalSince1970)
    }

    public func rescued(_ runs: Int) {
        registry.makeCounter(name: "tock_rescued_runs_total", help: "Runs of lost workers this scheduler recovered.")
            .increment(by: Int64(runs))
    }

    public func purged(_ runs: Int) {
        registry.makeCounter(name: "tock_purged_runs_total", help: "Finished runs deleted by history retention.")
            .increment(by: Int64(runs))
    }

    // MARK: Database gauges

    /// Sets the gauges `tock.gauges()` returned; gauges of earlier refreshes that are gone drop to 0.
    public func refresh(gauges: [DatabaseGauge]) {
        var seen = Set<GaugeKey>()
        for gauge in gauges {
            let labels = gauge.labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            registry.makeGauge(name: gauge.name, labels: labels, help: gauge.help).set(to: gauge.value)
            seen.insert(GaugeKey(name: gauge.name, help: gauge.help, labels: labels.flatMap { [$0.0, $0.1] }))
        }
        let gone = databaseGauges.withLock { known in
            defer { known = seen }
            return known.subtracting(seen)
        }
        for key in gone {
            let labels = stride(from: 0, to: key.labels.count, by: 2).map { (key.labels[$0], key.labels[$0 + 1]) }
            registry.makeGauge(name: key.name, labels: labels, help: key.help).set(to: 0.0)
        }
    }

    /// The Prometheus text exposition of everything above.
    public func render() -> String {
        registry.emitToString()
    }
}
