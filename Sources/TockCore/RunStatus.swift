/// The states of a run, as stored in `tock.runs.status`.
public enum RunStatus: String, Sendable, CaseIterable, Codable {
    case pending, running, succeeded, failed
    case timedOut = "timed_out"
    case cancelled, dead

    /// A final status never changes again.
    public var isFinal: Bool { self != .pending && self != .running }

    /// Parses a status typed by a user, listing the valid ones when it is not one.
    public init(userInput: String) throws(InputError) {
        guard let status = RunStatus(rawValue: userInput.lowercased()) else {
            throw InputError(field: "status", message: "'\(userInput)' is not a run status (use one of: "
                + RunStatus.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        self = status
    }
}

/// Bad input found before anything is written: names the field and says what to do instead.
public struct InputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}
