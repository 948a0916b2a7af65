import Foundation
import TockCore

public struct WorkerConfiguration: Sendable {
    /// Scripts run at once; also the most runs one claim takes.
    /// The name in tock.workers, the same across restarts (nil: host:pid).
    public var name: String?
    /// The pools whose runs it claims.
    public var pools: [String] = ["default"]
    /// How long a chosen name a live worker holds is tried again before the worker gives up: past rescue's 30 s
    /// heartbeat silence, so a predecessor that crashed is judged lost by then.
    public var nameWait: Duration = .seconds(35)
    public var concurrency: Int = ProcessInfo.processInfo.activeProcessorCount
    public var scriptsDirectory: String = "./scripts"
    /// Claims happen on NOTIFY; this slow sweep only catches what a lost notification would leave behind.
    public var sweepInterval: Duration = .seconds(60)
    public var heartbeatInterval: Duration = .seconds(1)
    public var outputCapBytes: Int = 1 << 20
    /// On SIGTERM/SIGINT: how long running scripts may finish before they are stopped and handed back.
    public var shutdownGrace: Duration = .seconds(30)
    public var killGraceSeconds: Double = 5
    /// How often a running script's new output is sent to the database for live viewers (nil: only at the end).
    public var liveOutputInterval: Duration? = .seconds(1)
    /// When LISTEN/NOTIFY does not work (PgBouncer in transaction mode), the claim loop polls this often instead.
    public var pollInterval: Duration = .milliseconds(500)
    /// A run running on this worker in the database that the worker does not hold, this long after its claim, goes
    /// back to the queue at the next heartbeat: a claim that committed but whose answer never came. Longer than
    /// the database's call timeout, after which the worker stops waiting for an answer.
    public var unheldRunsAfter: Duration = .seconds(60)
    /// The tock executable, started as `tock guard-scripts` to stop this worker's scripts if the worker dies (see
    /// ScriptGuard). Nil: no guard (a worker inside another program, as in the unit tests).
    public var guardExecutable: String?
    /// How what a run starts is stopped at its end (see ScriptContainment).
    public var containment: ScriptContainment.Preference = .automatic
    /// The user scripts run as (`--run-as`); nil: the worker's own.
    public var runAs: ScriptCredentials?
    /// The secrets jobs may name (`--secrets-file`); nil: none, and a job that names one fails, saying so.
    public var secrets: SecretsFile?
    /// The hosts HTTP jobs may send to (`--http-allow`); empty: HTTP runs fail here, saying so.
    public var httpAllow: HostAllowList = .none

    public init() {}
}
