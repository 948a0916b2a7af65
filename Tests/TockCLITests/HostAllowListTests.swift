import Testing
import TockCore
import TockNotify

@Suite("--webhook-allow: the hosts a delivery service may send to")
struct HostAllowListTests {
    @Test("exact hosts, subdomains of *.domain, * for any; nothing by default; case does not matter")
    func matching() throws {
        let list = try HostAllowList("hooks.slack.com, *.Example.com,127.0.0.1,::1")
        for host in ["hooks.slack.com", "HOOKS.slack.com", "a.example.com", "b.c.example.com", "127.0.0.1", "::1"] {
            #expect(list.allows(host: host), "\(host)")
        }
        for host in ["slack.com", "evil-hooks.slack.com", "example.com", "aexample.com", "example.com.evil.net", "127.0.0.2",
                     "169.254.169.254", "hooks.slack.com.", "2130706433", "localhost"] {
            #expect(!list.allows(host: host), "\(host)")
        }
        #expect(try HostAllowList("").isEmpty && !(try HostAllowList("")).allows(host: "127.0.0.1"))
        #expect(try HostAllowList("*").allows(host: "anything.example"))
    }

    @Test("a pattern that is not a host is refused with the reason", arguments: [
        "exa mple.com", "*.*.example.com", "ex*ample.com", "hooks.example.com:443", "http://hooks.example.com", "a/b",
    ])
    func badPatterns(pattern: String) {
        #expect(throws: TockError.self) { try HostAllowList(pattern) }
    }
}

@Suite("Standard Webhooks signatures")
struct WebhookSignatureTests {
    @Test("the specification's example: v1, and the base64 HMAC-SHA256 of id.timestamp.body under the decoded secret")
    func knownVector() throws {
        let signature = try WebhookSignature.sign(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                                  timestamp: 1614265330, body: Array(#"{"test": 2432232314}"#.utf8))
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(throws: TockError.self) { try WebhookSignature.sign(secret: "whsec_!!!", id: "m", timestamp: 1, body: []) }
        #expect(throws: TockError.self) { try WebhookSignature.sign(secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "m", timestamp: 1, body: []) }
    }
}
