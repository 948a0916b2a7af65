/// An error Tock reports to a person or an API client: what kind, which field, and a message that says the fix.
public struct TockError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        case invalidInput = "invalid_input"
        case notFound = "not_found"
        case conflict
        case unavailable
        /// The database role may not do this (SQLSTATE 42501): connect as a member of the right tock_* role.
        case forbidden
        case failed
    }

    public var kind: Kind
    public var field: String?
    public var message: String

    public init(_ kind: Kind, field: String? = nil, _ message: String) {
        self.kind = kind
        self.field = field
        self.message = message
    }

    public init(_ error: InputError) {
        self.init(.invalidInput, field: error.field, error.description)
    }

    public var description: String { message }
}
