import Foundation

/// Any JSON value, kept as it came: the values an audit entry records before and after a change.
public enum JSONValue: Sendable, Codable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Compact JSON with sorted keys, for one line of a table.
    public var compactText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? ""
    }
}

/// One entry of the audit log (`tock.audit_log`): who changed what, when, and the values before and after.
public struct AuditEntry: Sendable, Codable, Equatable {
    public var id: Int64
    public var at: Date
    /// An API token's name, a CLI call's OS user, or the database login (as `via` says: api, cli, sql).
    public var actor: String
    public var via: String
    /// The database login of the session that made the change.
    public var dbRole: String
    public var action: String
    public var jobId: Int64?
    public var jobName: String?
    public var runId: Int64?
    public var before: JSONValue?
    public var after: JSONValue?
}

/// What a bulk action on runs did (`tock.bulk_runs`).
public struct BulkResult: Sendable, Codable, Equatable {
    public var action: String
    public var selected: Int
    public var done: Int
    public var skipped: Int
    public var runIds: [Int64]
    /// The new runs a retry enqueued, in the order of `runIds`.
    public var newRunIds: [Int64]?
    /// The filter matched more runs than the call's limit: call again for the rest.
    public var more: Bool
}

/// How many runs a filter matches (`tock.count_runs`), counted up to a cap.
public struct RunCount: Sendable, Codable, Equatable {
    public var count: Int
    public var capped: Bool
    /// A bounded search (a filter on trigger, worker or pool) stopped before the filter's span ended: the count is
    /// of the runs from this one up, the oldest it read.
    public var searchedToId: Int64?

    public init(count: Int, capped: Bool, searchedToId: Int64? = nil) {
        self.count = count
        self.capped = capped
        self.searchedToId = searchedToId
    }
}

/// A page of runs matching a filter (`tock.find_runs_page`), newest first. A bounded search that stopped before
/// the page filled names the oldest run it read and its time: the next page starts below it.
public struct RunPage: Sendable, Codable, Equatable {
    public var runs: [RunInfo]
    public var searchedToId: Int64?
    public var searchedTo: Date?
}

/// A job whose runs failed lately (`tock.failure_groups`), with its last failure.
public struct FailureGroup: Sendable, Codable, Equatable {
    public var jobId: Int64
    public var jobName: String
    public var failures: Int
    public var failed: Int
    public var timedOut: Int
    public var dead: Int
    public var lastRunId: Int64
    public var lastStatus: String
    public var lastError: String?
    public var lastFinishedAt: Date
    public var lastOutput: String?
}

/// Runs that ended, and those that failed, in one bucket of time (`tock.activity`).
public struct ActivityBucket: Sendable, Codable, Equatable {
    public var bucketStart: Date
    public var ended: Int
    public var failed: Int
}
