import Foundation
import TockCore

/// Who may call the API. Tokens come from TOCK_API_TOKENS: `token:admin:ops,token2:read:grafana`, each with a
/// name the audit log records for what its holder changes. With none, anyone who can reach the server may do
/// everything, so it only binds to loopback and only answers requests addressed to a loopback name (a `Host` that
/// is not one is a DNS-rebinding page). `allowedOrigins` (TOCK_ALLOWED_ORIGINS) are the web origins besides the
/// server's own whose pages may call it, e.g. a reverse proxy's `https://tock.example`.
public struct APIAccess: Sendable, Equatable {
    public enum Role: String, Sendable { case read, admin }

    /// A token's role and name (`token-1`, `token-2`, … by position for a token given without one).
    public struct Grant: Sendable, Equatable {
        public var role: Role
        public var name: String

        public init(role: Role, name: String) {
            self.role = role
            self.name = name
        }
    }

    public var tokens: [String: Grant]
    /// Lowercased `scheme://host[:port]`, no trailing slash.
    public var allowedOrigins: [String]

    public init(tokens: [String: Grant] = [:], allowedOrigins: [String] = []) {
        self.tokens = tokens
        self.allowedOrigins = allowedOrigins
    }

    public var isOpen: Bool { tokens.isEmpty }

    /// Parses `token:role:name,…`: a token of at least 16 characters (no `:` or `,`), its role (admin or read;
    /// read when left out) and its name (letters, digits, `._-`, up to 40, starting with a letter; `token-N` by
    /// position when left out). The name comes last so that no character of a token can be taken for it.
    public static func parse(_ text: String?) throws(InputError) -> APIAccess {
        var tokens: [String: Grant] = [:]
        let entries = (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for (index, entry) in entries.enumerated() {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count <= 3 else {
                throw InputError(field: "TOCK_API_TOKENS", message: "an entry is token:role:name; one has \(parts.count - 1) ':' (a token may not contain ':')")
            }
            guard parts[0].count >= 16 else {
                throw InputError(field: "TOCK_API_TOKENS", message: "a token must be at least 16 characters (token:admin:name)")
            }
            let roleText = parts.count > 1 ? parts[1] : "read"
            guard let role = Role(rawValue: roleText) else {
                throw InputError(field: "TOCK_API_TOKENS", message: "role '\(roleText.prefix(20))' is not read or admin (token:admin:name,token:read:name)")
            }
            let name = parts.count > 2 ? parts[2] : "token-\(index + 1)"
            guard Self.isTokenName(Substring(name)) else {
                throw InputError(field: "TOCK_API_TOKENS", message: "'\(name.prefix(40))' is not a token name: a letter, then up to 39 letters, digits, '.', '_' or '-'")
            }
            guard !tokens.values.contains(where: { $0.name == name }), tokens[parts[0]] == nil else {
                throw InputError(field: "TOCK_API_TOKENS", message: "token '\(name)' is given twice, or two tokens share that name: the audit log tells them apart by it")
            }
            tokens[parts[0]] = Grant(role: role, name: name)
        }
        return APIAccess(tokens: tokens)
    }

    /// A token's name: starts with a letter, then up to 39 letters, digits, `.`, `_` or `-`.
    static func isTokenName(_ text: Substring) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter, text.count <= 40 else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    /// Parses `https://tock.example.com,http://127.0.0.1:9000`: origins as a browser sends them in `Origin`
    /// (scheme, host and a port only when it is not the scheme's default; no path).
    public static func parseOrigins(_ text: String?, field: String = "--allowed-origins") throws(InputError) -> [String] {
        var origins: [String] = []
        for entry in (text ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            var origin = entry.lowercased()
            if origin.hasSuffix("/") { origin.removeLast() }
            guard let url = URLComponents(string: origin), let scheme = url.scheme, ["http", "https"].contains(scheme),
                  let host = url.host, !host.isEmpty, url.path.isEmpty, url.query == nil, url.fragment == nil,
                  url.user == nil else {
                throw InputError(field: field, message: "'\(entry)' is not an origin like https://tock.example.com or http://127.0.0.1:8080 (scheme, host and port; no path)")
            }
            origins.append(origin)
        }
        return origins
    }

    // MARK: Loopback

    /// Whether `address` is a numeric loopback address: 127.0.0.0/8, ::1, or ::ffff:127.x.x.x. Names are not
    /// addresses: they are resolved first (`loopbackAddress(of:)`).
    public static func isLoopbackAddress(_ address: String) -> Bool {
        var text = address
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }  // ::1
        return bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
    }

    /// The numeric address to listen on when `host` is loopback, else nil. A literal must be a loopback
    /// address; the only name is `localhost`, and every address it resolves to (getaddrinfo) must be loopback.
    /// Other names are refused even when they resolve to 127.0.0.1 today (`127.0.0.1.nip.io`): what a public
    /// name resolves to is someone else's choice. The server then binds the address checked here, not the name.
    public static func loopbackAddress(of host: String) -> String? {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if isNumericAddress(bare) { return isLoopbackAddress(bare) ? bare : nil }
        guard bare.lowercased() == "localhost" else { return nil }
        let addresses = resolve(bare)
        guard !addresses.isEmpty, addresses.allSatisfy(isLoopbackAddress) else { return nil }
        return addresses[0]
    }

    /// Whether `host` is a loopback address where an open API may listen (see `loopbackAddress(of:)`).
    public static func isLoopback(_ host: String) -> Bool {
        loopbackAddress(of: host) != nil
    }

    static func isNumericAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// Every address getaddrinfo gives for `host`, as numeric text; empty when it does not resolve.
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &buffer, socklen_t(buffer.count),
                           nil, 0, NI_NUMERICHOST) == 0 {
                addresses.append(String(cString: buffer))
            }
            entry = current.pointee.ai_next
        }
        return addresses
    }

    /// Whether a request's `Host` (authority: name or address, optional port) names this server on loopback, as
    /// a browser sends it for a page of this server. It is not resolved: a rebinding page's name resolves to
    /// 127.0.0.1 by design; what gives it away is that the browser still sends that name.
    public static func isLoopbackAuthority(_ authority: String) -> Bool {
        let host = hostPart(of: authority).lowercased()
        return host == "localhost" || (isNumericAddress(host) && isLoopbackAddress(host))
    }

    /// `example.com:8080` → `example.com`, `[::1]:8080` → `::1`.
    static func hostPart(of authority: String) -> String {
        if authority.hasPrefix("["), let end = authority.firstIndex(of: "]") {
            return String(authority[authority.index(after: authority.startIndex)..<end])
        }
        if authority.filter({ $0 == ":" }).count == 1, let colon = authority.firstIndex(of: ":") {
            return String(authority[..<colon])
        }
        return authority
    }
}
