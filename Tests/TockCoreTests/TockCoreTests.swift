import Foundation
import Testing
@testable import TockCore

@Suite("output capture")
struct OutputTailTests {
    @Test("keeps the last bytes up to the cap and counts all of them")
    func capsToTheTail() {
        var tail = OutputTail(capacity: 10)
        tail.append(Array("0123456789".utf8))
        #expect(!tail.truncated)
        tail.append(Array("abcde".utf8))
        #expect(tail.truncated)
        #expect(tail.totalBytes == 15)
        #expect(tail.text == "56789abcde")
    }

    @Test("a single write larger than the cap keeps only its end")
    func hugeWrite() {
        var tail = OutputTail(capacity: 4)
        tail.append(Array(repeating: UInt8(ascii: "x"), count: 1000) + Array("done".utf8))
        #expect(tail.text == "done")
        #expect(tail.bytes.count == 4)
    }

    @Test("invalid UTF-8 and NUL bytes become U+FFFD; a sequence split by the cut is dropped")
    func tolerateBadBytes() {
        var tail = OutputTail(capacity: 100)
        tail.append([0x61, 0xFF, 0x00, 0x62])
        #expect(tail.text == "a\u{FFFD}\u{FFFD}b")
        var cut = OutputTail(capacity: 3)
        cut.append(Array("é".utf8) + Array("ab".utf8))  // é is 2 bytes: the cut leaves its continuation byte
        #expect(cut.text == "ab")
    }
}

@Suite("durations")
struct DurationTextTests {
    @Test("reads the forms people type", arguments: [
        ("90s", 90.0), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("45", 45), ("0.5", 0.5),
    ])
    func parses(text: String, seconds: Double) throws {
        #expect(try DurationText.seconds(text) == seconds)
    }

    @Test("refuses nonsense and zero, naming the field", arguments: ["", "abc", "10x", "m", "0", "0s", "5m3"])
    func refuses(text: String) {
        #expect(throws: InputError.self) { try DurationText.seconds(text, field: "timeout") }
        do { _ = try DurationText.seconds(text, field: "timeout") } catch { #expect(error.field == "timeout") }
    }

    @Test("formats compactly")
    func formats() {
        #expect(DurationText.format(seconds: 5400) == "1h30m")
        #expect(DurationText.format(seconds: 3600) == "1h")
        #expect(DurationText.format(seconds: 45) == "45s")
    }
}

@Suite("connection settings")
struct ConnectionSettingsTests {
    @Test("DATABASE_URL over TCP")
    func tcpURL() throws {
        let settings = try #require(try ConnectionSettings.fromEnvironment(
            ["DATABASE_URL": "postgres://tock:s%40cret@db.example:6543/jobs?sslmode=require"]))
        #expect(settings.endpoint == .tcp(host: "db.example", port: 6543))
        #expect(settings.username == "tock")
        #expect(settings.password == "s@cret")
        #expect(settings.database == "jobs")
        #expect(settings.requireTLS)
    }

    @Test("a socket directory in the URL's host parameter, and the URL round-trips")
    func socketURL() throws {
        let settings = try #require(try ConnectionSettings.fromEnvironment(
            ["DATABASE_URL": "postgres://postgres@/tock?host=/srv/tock/run&port=5433"]))
        #expect(settings.endpoint == .unixSocket(path: "/srv/tock/run/.s.PGSQL.5433"))
        let again = try #require(try ConnectionSettings.fromEnvironment(["DATABASE_URL": settings.url()]))
        #expect(again == settings)
    }

    @Test("the PG* variables, and nothing when none is set")
    func libpqVariables() throws {
        let settings = try #require(try ConnectionSettings.fromEnvironment(
            ["PGHOST": "/var/run/postgresql", "PGUSER": "ops", "PGDATABASE": "tock"]))
        #expect(settings.endpoint == .unixSocket(path: "/var/run/postgresql/.s.PGSQL.5432"))
        #expect(settings.username == "ops")
        #expect(try ConnectionSettings.fromEnvironment(["HOME": "/root"]) == nil)
    }

    @Test("a URL that is not postgres:// is refused")
    func badURL() {
        #expect(throws: InputError.self) { try ConnectionSettings.fromEnvironment(["DATABASE_URL": "mysql://x/y"]) }
        #expect(throws: InputError.self) { try ConnectionSettings.fromEnvironment(["PGPORT": "99999"]) }
    }

    @Test("several servers, as libpq takes them: in the authority, in host=, and in PGHOST; the URL round-trips")
    func severalServers() throws {
        let tcp = try #require(try ConnectionSettings.fromEnvironment(
            ["DATABASE_URL": "postgres://tock:pw@db1:5432,db2,[::1]:6000/tock?target_session_attrs=read-write"]))
        #expect(tcp.servers == [.tcp(host: "db1", port: 5432), .tcp(host: "db2", port: 5432), .tcp(host: "::1", port: 6000)])
        #expect(tcp.endpoint == .tcp(host: "db1", port: 5432))
        #expect(tcp.requireWritable && tcp.followsPrimary)
        #expect((tcp.username, tcp.password, tcp.database) == ("tock", "pw", "tock"))
        #expect(try ConnectionSettings.fromEnvironment(["DATABASE_URL": tcp.url()]) == tcp)
        #expect(try ConnectionSettings.fromEnvironment(["DATABASE_URL": tcp.at(.tcp(host: "db2", port: 5432)).url()])?.servers == tcp.servers)

        let sockets = try #require(try ConnectionSettings.fromEnvironment(
            ["DATABASE_URL": "postgres://postgres@/tock?host=/run/a,/run/b&port=5432,5433"]))
        #expect(sockets.servers == [.unixSocket(path: "/run/a/.s.PGSQL.5432"), .unixSocket(path: "/run/b/.s.PGSQL.5433")])
        #expect(!sockets.requireWritable && sockets.followsPrimary)
        #expect(try ConnectionSettings.fromEnvironment(["DATABASE_URL": sockets.url()]) == sockets)

        let variables = try #require(try ConnectionSettings.fromEnvironment(
            ["PGHOST": "h1,h2", "PGPORT": "5433", "PGTARGETSESSIONATTRS": "read-write", "PGUSER": "ops"]))
        #expect(variables.servers == [.tcp(host: "h1", port: 5433), .tcp(host: "h2", port: 5433)])
        #expect(variables.requireWritable)

        let literal = try #require(try ConnectionSettings.fromEnvironment(["DATABASE_URL": "postgres://u:p@[::1]:6000/db"]))
        #expect(literal.endpoint == .tcp(host: "::1", port: 6000))
        #expect(try ConnectionSettings.fromEnvironment(["DATABASE_URL": literal.url()]) == literal)

        let one = try #require(try ConnectionSettings.fromEnvironment(["DATABASE_URL": "postgres://tock@db1/tock"]))
        #expect(!one.followsPrimary && one.servers == [one.endpoint])
        var moved = one
        moved.endpoint = .tcp(host: "db9", port: 5432)
        #expect(moved.servers == [moved.endpoint], "a server set alone is the only one")
    }

    @Test("a URL that does not parse is shown without its password")
    func badURLHidesPassword() {
        do {
            _ = try ConnectionSettings.fromEnvironment(["DATABASE_URL": "postgres://u:hunter2@db:port/tock"])
            Issue.record("accepted a port that is not a number")
        } catch {
            #expect(!error.message.contains("hunter2") && error.message.contains("postgres://u:***@db:port/tock"), "\(error.message)")
        }
    }

    @Test("several servers given wrong: a precise error", arguments: [
        (["DATABASE_URL": "postgres://db1,,db2/tock"], "list of 1 to 16 hosts"),
        (["DATABASE_URL": "postgres://db1:5432,db2:99999/tock"], "'99999' is not a port number"),
        (["DATABASE_URL": "postgres://x@/tock?host=/a,/b,/c&port=1,2"], "2 ports for 3 hosts"),
        (["DATABASE_URL": "postgres://db1,db2/tock?target_session_attrs=standby"], "target_session_attrs 'standby'"),
        (["PGHOST": "h1,h2", "PGTARGETSESSIONATTRS": "read-only"], "target_session_attrs 'read-only'"),
    ])
    func badServers(environment: [String: String], message: String) {
        do {
            _ = try ConnectionSettings.fromEnvironment(environment)
            Issue.record("accepted \(environment)")
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}

@Suite("script paths")
struct ScriptPathTests {
    @Test("relative paths inside the directory pass", arguments: ["a.sh", "reports/daily.sh", "x..y.sh", "./a.sh"])
    func allowed(path: String) throws {
        try ScriptPath.validate(path)
    }

    @Test("absolute paths, '..' and empty paths are refused", arguments: ["/etc/passwd", "../x.sh", "a/../../x", "a/..", ""])
    func refused(path: String) {
        #expect(throws: InputError.self) { try ScriptPath.validate(path) }
    }
}

@Suite("retry backoff")
struct RetryBackoffTests {
    @Test("doubles from the initial wait up to the maximum, and starts over after reset")
    func doublesAndCaps() {
        var backoff = RetryBackoff(initial: .milliseconds(200), maximum: .seconds(5))
        let waits = (0..<8).map { _ in backoff.next() }
        #expect(waits == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                          .milliseconds(3200), .seconds(5), .seconds(5), .seconds(5)])
        backoff.reset()
        #expect(backoff.next() == .milliseconds(200))
    }
}

@Suite("JSON times")
struct JSONTimeTests {
    @Test("reads PostgreSQL's JSON timestamps with offsets and microseconds")
    func parsesPostgresFormat() throws {
        let a = try #require(TockJSON.parseTimestamp("2024-03-10T07:00:00.5+00:00"))
        #expect(a.timeIntervalSince1970 == 1710054000.5)
        let b = try #require(TockJSON.parseTimestamp("2024-03-10T02:00:00-05:00"))
        #expect(b.timeIntervalSince1970 == 1710054000)
        let c = try #require(TockJSON.parseTimestamp("2000-02-29T00:00:00Z"))
        #expect(c.timeIntervalSince1970 == 951782400)
        #expect(TockJSON.parseTimestamp("yesterday") == nil)
    }

    @Test("run statuses typed by users")
    func statuses() throws {
        #expect(try RunStatus(userInput: "TIMED_OUT") == .timedOut)
        #expect(throws: InputError.self) { try RunStatus(userInput: "done") }
    }
}

@Suite("awaiting a call that may never return")
struct AwaitAbandoningTests {
    struct Late: Error {}

    /// A call that ignores cancellation and never returns, like a lease held back by a pool whose server is gone.
    static func stuck() async -> Int {
        await withCheckedContinuation { (_: CheckedContinuation<Int, Never>) in }
    }

    @Test("returns the call's value, and its error")
    func passesThrough() async throws {
        #expect(try await awaitAbandoning(timeout: .seconds(30)) { 7 } == 7)
        await #expect(throws: Late.self) { try await awaitAbandoning { () async throws -> Int in throw Late() } }
    }

    @Test("a stuck call times out with the given error")
    func timesOut() async {
        await #expect(throws: Late.self) { try await awaitAbandoning(timeout: .milliseconds(50), timedOut: { Late() }) { await Self.stuck() } }
    }

    @Test("a waiter cancelled before or while it waits stops waiting on a stuck call")
    func cancelled() async {
        let waiting = Task { try await awaitAbandoning { await Self.stuck() } }
        try? await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }

        let early = Task { try await awaitAbandoning { await Self.stuck() } }
        early.cancel()
        await #expect(throws: CancellationError.self) { try await early.value }
    }
}
