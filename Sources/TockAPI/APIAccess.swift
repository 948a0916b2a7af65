import TockCore

/// Who may call the API. Tokens come from TOCK_API_TOKENS: `token:admin,token:read`. With none, anyone who can
/// reach the server may do everything, so it only binds to loopback.
public struct APIAccess: Sendable, Equatable {
    public enum Role: String, Sendable { case read, admin }

    public var tokens: [String: Role]

    public init(tokens: [String: Role] = [:]) { self.tokens = tokens }

    public var isOpen: Bool { tokens.isEmpty }

    /// Parses `token:admin,token2:read` (a token without a role is read-only).
    public static func parse(_ text: String?) throws(InputError) -> APIAccess {
        var tokens: [String: Role] = [:]
        for entry in (text ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts[0].count >= 16 else {
                throw InputError(field: "TOCK_API_TOKENS", message: "a token must be at least 16 characters")
            }
            let roleText = parts.count > 1 ? parts[1] : "read"
            guard let role = Role(rawValue: roleText) else {
                throw InputError(field: "TOCK_API_TOKENS", message: "role '\(roleText)' is not read or admin (token:admin,token:read)")
            }
            tokens[parts[0]] = role
        }
        return APIAccess(tokens: tokens)
    }

    /// Whether `host` is a loopback address, where an open API may listen.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

import Foundation
