import Foundation

/// What a user gives to create a job. Nil fields take the database's defaults.
public struct JobDefinition: Sendable, Codable, Equatable {
    public var name: String
    /// Nil for an HTTP job.
    public var script: String?
    public var args: [String] = []
    public var schedule: String = "manual"
    public var timezone: String = "UTC"
    public var priority: Int?
    public var timeoutSeconds: Double?
    public var maxAttempts: Int?
    public var overlap: String?
    public var misfire: String?
    public var retryBaseSeconds: Double?
    public var retryCapSeconds: Double?
    public var enabled: Bool = true
    /// The pool whose workers run it (nil: default).
    public var pool: String?
    /// At most this many runs at once across every worker (nil: no limit).
    public var maxRunning: Int?
    /// At most so many starts per period, as '10/1m' (nil: no limit).
    public var rate: String?
    /// The parameters a run takes (nil: none).
    public var params: [ParamDefinition]?
    /// Free text for the people who run it.
    public var description: String?
    /// Variables its script gets (not for secrets).
    public var env: [String: String]?
    /// The secrets its script gets, by name, from each worker's secrets file.
    public var secrets: [String]?
    /// An HTTP job's request (then no script).
    public var http: HTTPRequestSpec?

    public init(name: String, script: String, args: [String] = [], schedule: String = "manual", timezone: String = "UTC") {
        self.name = name
        self.script = script
        self.args = args
        self.schedule = schedule
        self.timezone = timezone
    }
}

/// A row of `tock.job_overview`.
public struct JobInfo: Sendable, Codable, Equatable {
    public var id: Int64
    public var name: String
    /// Nil for an HTTP job.
    public var script: String?
    public var args: [String]
    public var schedule: String
    public var scheduleDescription: String
    public var timezone: String
    public var enabled: Bool
    public var state: String
    public var priority: Int
    public var timeoutSeconds: Double
    public var maxAttempts: Int
    public var overlap: String
    public var nextRunAt: Date?
    public var lastRunId: Int64?
    public var lastRunStatus: String?
    public var lastRunStartedAt: Date?
    public var lastRunFinishedAt: Date?
    public var running: Int64
    public var pending: Int64
    public var createdAt: Date
    public var updatedAt: Date
    public var misfire: String
    /// The pool whose workers run it.
    public var pool: String?
    public var retryBaseSeconds: Double
    public var retryCapSeconds: Double
    /// At most this many runs at once across every worker (nil: no limit).
    public var maxRunning: Int?
    /// At most so many starts per period, as '10/1m' (nil: no limit).
    public var rate: String?
    /// The settings it takes from the fleet's defaults (`tock config`): max_attempts, timeout, retry_base, …
    public var inherited: [String]
    /// The parameters a run takes (nil: none).
    public var params: [ParamDefinition]?
    /// Free text for the people who run it.
    public var description: String?
    /// Variables its script gets.
    public var env: [String: String]?
    /// The secrets its script gets, by name, from each worker's secrets file.
    public var secrets: [String]?
    /// An HTTP job's request (then no script).
    public var http: HTTPRequestSpec?

    /// What it runs, as people read it: the script and its arguments, or the request.
    public var target: String {
        if let http { return "\(http.method ?? "POST") \(http.url)" }
        return ([script ?? ""] + args.map { "'\($0)'" }).joined(separator: " ")
    }
}

/// An HTTP job's request (tock.checked_http): the worker sends it, to a host its --http-allow lists.
public struct HTTPRequestSpec: Sendable, Codable, Equatable {
    public var method: String?
    public var url: String
    public var headers: [String: String]?
    public var body: String?
    /// The statuses that count as success, comma separated: 2xx, 200,204, 2xx,304 (nil: 2xx).
    public var expect: String?

    public init(method: String? = nil, url: String, headers: [String: String]? = nil, body: String? = nil, expect: String? = nil) {
        (self.method, self.url, self.headers, self.body, self.expect) = (method, url, headers, body, expect)
    }

    /// Whether `status` is one `expect` lists.
    public func expects(_ status: Int) -> Bool {
        (expect ?? "2xx").split(separator: ",").contains { item in
            item.hasSuffix("xx") ? item.first.map { String($0) } == String(status / 100) : Int(item) == status
        }
    }
}

/// A row of `tock.run_history`, with the output when it was asked for.
public struct RunInfo: Sendable, Codable, Equatable {
    public var id: Int64
    public var jobId: Int64
    public var jobName: String
    public var trigger: String
    public var status: String
    public var attempt: Int
    public var firstRunId: Int64?
    public var priority: Int
    public var scheduledFor: Date?
    public var enqueuedAt: Date
    public var runAfter: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var durationSeconds: Double?
    public var workerId: Int64?
    public var workerName: String?
    public var exitCode: Int?
    public var error: String?
    public var outputBytes: Int64?
    public var outputTruncated: Bool?
    public var cancelRequestedAt: Date?
    public var output: String?
    /// The parameter values it runs with (nil: its job has none).
    public var params: [String: String]?
    /// For a chained run: the run whose end started it.
    public var upstream: Upstream?
    /// The run a retry by hand started from this one.
    public var retriedBy: Int64?
    /// The pool whose workers run it.
    public var pool: String?
    /// One run alone (`tock.run_detail`): its pool, while it is pending and no live worker serves that pool.
    public var waitingForPool: String?

    public struct Upstream: Sendable, Codable, Equatable {
        public var runId: Int64
        public var job: String
        public var status: String
    }
}

/// A parameter a job declares (`tock.jobs.params`): its script gets it as TOCK_PARAM_<NAME>, and `{{name}}` in the
/// job's arguments.
public struct ParamDefinition: Sendable, Codable, Equatable {
    public var name: String
    public var `default`: String?
    public var required: Bool?
    public var choices: [String]?
    public var pattern: String?

    public init(name: String, default: String? = nil, required: Bool? = nil, choices: [String]? = nil, pattern: String? = nil) {
        self.name = name
        self.default = `default`
        self.required = required
        self.choices = choices
        self.pattern = pattern
    }
}

/// A row of `tock.config_settings`: a fleet-wide setting, as people write it.
public struct ConfigSetting: Sendable, Codable, Equatable {
    public var key: String
    public var value: String
    public var description: String
}

/// A row of `tock.pool_overview`: a pool's jobs, queue, workers and limits.
public struct PoolInfo: Sendable, Codable, Equatable {
    public var pool: String
    public var jobs: Int64
    public var pending: Int64
    public var ready: Int64
    public var running: Int64
    public var oldestReadyAgeSeconds: Double
    public var workersAlive: Int64
    /// At most this many of its runs at once across every worker (nil: no limit).
    public var maxRunning: Int?
    /// At most so many starts per period, as '10/1m' (nil: no limit).
    public var rate: String?

    /// A pool nothing names: no jobs, runs, workers or limits.
    public init(empty pool: String) {
        (self.pool, jobs, pending, ready, running, oldestReadyAgeSeconds, workersAlive) = (pool, 0, 0, 0, 0, 0, 0)
    }
}

/// A row of `tock.worker_overview`.
public struct WorkerInfo: Sendable, Codable, Equatable {
    public var id: Int64
    public var name: String
    public var host: String
    public var pid: Int
    public var concurrency: Int
    public var state: String
    public var alive: Bool
    public var startedAt: Date
    public var lastHeartbeatAt: Date
    public var heartbeatAgeSeconds: Double
    public var stoppedAt: Date?
    public var runsProcessed: Int64
    public var running: Int64
    public var scriptsDir: String?
    public var version: String?
    /// The error of this worker's claims while they keep failing (nil once one works).
    public var claimError: String?
    public var claimFailingSince: Date?
    /// The pools it claims runs of.
    public var pools: [String]?
}

/// The row of `tock.queue_depth`.
public struct QueueDepth: Sendable, Codable, Equatable {
    public var pending: Int64
    public var ready: Int64
    public var delayed: Int64
    public var running: Int64
    public var oldestReadyAt: Date?
    public var oldestReadyAgeSeconds: Double
}

/// A run a worker has claimed: everything needed to start it.
public struct ClaimedRun: Sendable, Equatable {
    public var runId: Int64
    public var jobId: Int64
    public var jobName: String
    public var script: String
    public var args: [String]
    public var timeoutSeconds: Double
    public var attempt: Int
    public var trigger: String
    public var scheduledFor: Date?
    /// What the run adds to its script's environment: its job's variables, its parameters (TOCK_PARAM_<NAME>), a
    /// chained run's TOCK_UPSTREAM_*.
    public var environment: [String: String]
    /// The secrets its job needs, by name: the worker adds their values from its secrets file.
    public var secrets: [String]
    /// An HTTP job's request, which the worker sends instead of running a script.
    public var http: HTTPRequestSpec?

    public init(runId: Int64, jobId: Int64, jobName: String, script: String, args: [String], timeoutSeconds: Double,
                attempt: Int, trigger: String, scheduledFor: Date?, environment: [String: String] = [:],
                secrets: [String] = [], http: HTTPRequestSpec? = nil) {
        self.runId = runId
        self.jobId = jobId
        self.jobName = jobName
        self.script = script
        self.args = args
        self.timeoutSeconds = timeoutSeconds
        self.attempt = attempt
        self.trigger = trigger
        self.scheduledFor = scheduledFor
        self.environment = environment
        self.secrets = secrets
        self.http = http
    }
}

/// What an action on a run led to: `{"run_id": 42, "status": "cancelling"}`.
/// What a run-now did: the run it enqueued, or the run its key had already started within 24 hours.
public struct TriggeredRun: Sendable, Codable, Equatable {
    public var runId: Int64
    public var replayed: Bool
    /// pending for a new run; a replayed run's status now, or purged when the history no longer holds it.
    public var status: String

    public init(runId: Int64, replayed: Bool, status: String = "pending") {
        self.runId = runId
        self.replayed = replayed
        self.status = status
    }
}

public struct RunAction: Sendable, Codable, Equatable {
    public var runId: Int64
    public var status: String
    /// A run-now whose key had already started this run (Idempotency-Key): nothing was enqueued.
    public var replayed: Bool?

    public init(runId: Int64, status: String, replayed: Bool? = nil) {
        self.runId = runId
        self.status = status
        self.replayed = replayed
    }
}

/// How a run ended, as the worker reports it to `tock.finish_run`.
public struct RunOutcome: Sendable, Equatable {
    public var status: RunStatus
    public var exitCode: Int?
    public var error: String?
    public var output: String
    public var outputBytes: Int
    public var outputTruncated: Bool

    public init(status: RunStatus, exitCode: Int? = nil, error: String? = nil, output: String = "",
                outputBytes: Int = 0, outputTruncated: Bool = false) {
        self.status = status
        self.exitCode = exitCode
        self.error = error
        self.output = output
        self.outputBytes = outputBytes
        self.outputTruncated = outputTruncated
    }
}

/// One row of `tock.gauges()`: a figure only the database knows (queue depth, workers alive), for `/metrics`.
public struct DatabaseGauge: Sendable, Decodable, Equatable {
    public var name: String
    public var help: String
    public var labels: [String: String]
    public var value: Double
}

/// One row of `tock.job_stats`: a job's runs that ended in one period ('24h' or '7d').
public struct JobStats: Sendable, Codable, Equatable {
    public var jobId: Int64
    public var jobName: String
    public var period: String
    public var runs: Int64
    public var succeeded: Int64
    public var failed: Int64
    public var successRate: Double?
    public var p50Seconds: Double?
    public var p95Seconds: Double?
    public var maxSeconds: Double?
    public var lastFailureAt: Date?
}

/// One row of `tock.lag`: the pending runs at one priority in one pool.
public struct LagRow: Sendable, Codable, Equatable {
    public var priority: Int
    public var waiting: Int64
    public var ready: Int64
    public var delayed: Int64
    public var oldestReadyAt: Date?
    public var oldestReadyAgeSeconds: Double
    public var pool: String
    /// Live workers serving the pool: 0 means these runs wait for a worker of the pool, not for their turn.
    public var workersAlive: Int64
}

/// One row of `tock.stuck_runs`.
public struct StuckRun: Sendable, Codable, Equatable {
    public var runId: Int64
    public var jobId: Int64
    public var jobName: String
    public var workerId: Int64?
    public var workerName: String?
    public var startedAt: Date
    public var runningSeconds: Double
    public var timeoutSeconds: Double
    public var reason: String
}

/// What `tock.reset_job` did.
public struct JobReset: Sendable, Codable, Equatable {
    public var jobId: Int64
    public var runsEnded: [Int64]
    public var nextRunAt: Date?
}

/// A row of `tock.hook_list`: a webhook, shown without its secret and with its URL's origin alone.
public struct HookInfo: Sendable, Codable, Equatable {
    public var id: Int64
    public var jobId: Int64?
    /// The job's name, or `*` for every job.
    public var jobName: String
    public var event: String
    /// Where a webhook goes (its origin alone); nil for a chain.
    public var urlOrigin: String?
    public var lateAfter: String?
    public var maxAttempts: Int
    public var createdAt: Date
    /// The job a chain runs; nil for a webhook.
    public var runJob: String?
}

/// A hook just added: its id, and its signing secret (shown this once).
public struct NewHook: Sendable, Codable, Equatable {
    public var hookId: Int64
    /// Nil for a chain, which signs nothing.
    public var secret: String?

    public init(hookId: Int64, secret: String?) {
        (self.hookId, self.secret) = (hookId, secret)
    }
}

/// A row of `tock.delivery_overview`: a webhook delivery and how its attempts went.
public struct DeliveryInfo: Sendable, Codable, Equatable {
    public var id: Int64
    public var hookId: Int64?
    public var jobId: Int64
    public var jobName: String?
    public var runId: Int64
    public var event: String
    public var messageId: String
    public var urlOrigin: String?
    public var status: String
    public var attempts: Int
    public var maxAttempts: Int
    public var nextAttemptAt: Date?
    public var lastCode: Int?
    public var lastError: String?
    public var createdAt: Date
    public var finishedAt: Date?
}

/// A delivery a delivery service took (`tock.claim_deliveries`): what to send, signed with `secret`.
public struct ClaimedDelivery: Sendable, Equatable {
    public var id: Int64
    public var attempt: Int
    public var messageId: String
    public var url: String
    public var body: String
    public var secret: String

    public init(id: Int64, attempt: Int, messageId: String, url: String, body: String, secret: String) {
        (self.id, self.attempt, self.messageId, self.url, self.body, self.secret) = (id, attempt, messageId, url, body, secret)
    }
}
