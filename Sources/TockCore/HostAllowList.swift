import Foundation

/// The hosts a delivery service may send webhooks to (`--webhook-allow`, TOCK_WEBHOOK_ALLOW), or a worker HTTP jobs
/// to (`--http-allow`): an address is chosen by whoever may add hooks or jobs, and the process must not become their
/// way into addresses only it can reach (a cloud's metadata service, an internal admin port). Deny by default: an
/// empty list sends nothing.
/// Patterns, comma separated: `hooks.slack.com` (that host), `*.example.com` (its subdomains), `127.0.0.1`, or `*`.
public struct HostAllowList: Sendable, Equatable {
    public let patterns: [String]

    /// `field` names the option in errors.
    public init(_ text: String, field: String = "webhook-allow") throws(TockError) {
        let patterns = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        guard patterns.count <= 100 else {
            throw TockError(.invalidInput, field: field, "at most 100 host patterns")
        }
        for pattern in patterns where pattern != "*" {
            let name = pattern.hasPrefix("*.") ? String(pattern.dropFirst(2)) : pattern
            let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":") }
            guard !name.isEmpty, name.count <= 253, allowed, !name.contains("*") else {
                throw TockError(.invalidInput, field: field,
                                "'\(pattern.prefix(80))' is not a host pattern: a host name or address, *.domain, or *")
            }
            // One colon is host:port (an IPv6 address has several): ports are not matched, so it would allow nothing.
            guard name.filter({ $0 == ":" }).count != 1 else {
                throw TockError(.invalidInput, field: field, "'\(pattern.prefix(80))': give the host alone; ports are not matched")
            }
        }
        self.patterns = patterns
    }

    public var isEmpty: Bool { patterns.isEmpty }

    /// Nothing allowed.
    public static let none = HostAllowList(patterns: [])

    private init(patterns: [String]) { self.patterns = patterns }

    /// Whether `host` (as the URL names it, brackets of an IPv6 literal removed) is allowed.
    public func allows(host: String) -> Bool {
        let host = host.lowercased()
        // A name or an address as written: anything else (a %00 decoded into the name, say) is no host to allow,
        // whatever the pattern, for the resolver may read it otherwise than this comparison does.
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":") }) else {
            return false
        }
        return patterns.contains { pattern in
            if pattern == "*" { return true }
            if pattern.hasPrefix("*.") { return host.hasSuffix(String(pattern.dropFirst(1))) && host.count > pattern.count - 1 }
            return host == pattern
        }
    }

    /// Why `url` may not be sent to (not http(s), or its host is not allowed), naming `option`, the setting that lists
    /// the hosts; nil when it may.
    public func refusal(of url: String, option: String) -> String? {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
              var host = parsed.host, !host.isEmpty else {
            return "not an http:// or https:// URL"
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard allows(host: host) else {
            return "host \(host) is not in \(option)"
        }
        return nil
    }

    /// A URL as logs may show it: scheme, host and port (its path or query may hold a token, a webhook's its secret).
    public static func origin(_ url: String) -> String {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, let host = parsed.host else { return "?" }
        return "\(scheme)://\(host)\(parsed.port.map { ":\($0)" } ?? "")"
    }
}
