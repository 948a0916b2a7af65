import Foundation
import PostgresNIO
import Testing
import TockCore
import TockPostgres
import TockTesting

/// One table for every schedule kind: the next fire times after a moment, in UTC ISO form.
struct FireCase: CustomTestStringConvertible, Sendable {
    var schedule: String
    var timezone: String
    var after: String
    var expected: [String]
    var anchor: String? = nil
    var note: String
    var testDescription: String { "\(note): '\(schedule)' in \(timezone)" }
}

let fireCases: [FireCase] = [
    // Intervals: anchored, drift-free.
    FireCase(schedule: "every 5m", timezone: "UTC", after: "2024-01-01T00:00:00Z",
             expected: ["2024-01-01T00:03:00Z", "2024-01-01T00:08:00Z"], anchor: "2023-12-31T23:58:00Z",
             note: "interval keeps the cadence of its anchor"),
    FireCase(schedule: "every 30s", timezone: "UTC", after: "2024-01-01T00:00:10Z",
             expected: ["2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"], anchor: "2024-01-01T00:00:00Z",
             note: "seconds"),
    FireCase(schedule: "every 1d", timezone: "America/New_York", after: "2024-03-09T12:00:00Z",
             expected: ["2024-03-10T12:00:00Z", "2024-03-11T12:00:00Z"], anchor: "2024-03-09T12:00:00Z",
             note: "an interval is elapsed time: 24h across the DST change"),
    // Calendar kinds.
    FireCase(schedule: "hourly at :15", timezone: "UTC", after: "2024-01-01T10:15:00Z",
             expected: ["2024-01-01T11:15:00Z", "2024-01-01T12:15:00Z"], note: "hourly, strictly after"),
    FireCase(schedule: "daily at 06:00", timezone: "Asia/Hong_Kong", after: "2024-01-01T00:00:00Z",
             expected: ["2024-01-01T22:00:00Z", "2024-01-02T22:00:00Z"], note: "Hong Kong has no DST"),
    FireCase(schedule: "weekly on mon,thu at 09:30", timezone: "UTC", after: "2024-01-01T00:00:00Z",
             expected: ["2024-01-01T09:30:00Z", "2024-01-04T09:30:00Z", "2024-01-08T09:30:00Z"], note: "weekly"),
    FireCase(schedule: "monthly on 31 at 08:00", timezone: "UTC", after: "2024-01-31T09:00:00Z",
             expected: ["2024-02-29T08:00:00Z", "2024-03-31T08:00:00Z", "2024-04-30T08:00:00Z"],
             note: "day 31 fires on the last day of shorter months, leap February included"),
    FireCase(schedule: "monthly on 29 at 00:00", timezone: "UTC", after: "2023-01-30T00:00:00Z",
             expected: ["2023-02-28T00:00:00Z", "2023-03-29T00:00:00Z"], note: "day 29 in a common year"),
    FireCase(schedule: "monthly on last at 23:30", timezone: "UTC", after: "2024-04-01T00:00:00Z",
             expected: ["2024-04-30T23:30:00Z", "2024-05-31T23:30:00Z"], note: "'last'"),
    // DST: New York springs forward 2024-03-10 02:00 -> 03:00, falls back 2024-11-03 02:00 -> 01:00.
    FireCase(schedule: "daily at 02:30", timezone: "America/New_York", after: "2024-03-09T12:00:00Z",
             expected: ["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
             note: "a time in the spring-forward gap fires at the first instant after it (03:00 EDT)"),
    FireCase(schedule: "daily at 01:30", timezone: "America/New_York", after: "2024-11-02T12:00:00Z",
             expected: ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
             note: "a time that occurs twice fires once, at its first occurrence (EDT)"),
    FireCase(schedule: "30 * * * *", timezone: "America/New_York", after: "2024-11-03T04:00:00Z",
             expected: ["2024-11-03T04:30:00Z", "2024-11-03T05:30:00Z", "2024-11-03T07:30:00Z"],
             note: "hourly cron skips the repeated hour's second 01:30"),
    // London springs forward 2024-03-31 01:00 -> 02:00, falls back 2024-10-27 02:00 -> 01:00.
    FireCase(schedule: "daily at 01:30", timezone: "Europe/London", after: "2024-03-30T12:00:00Z",
             expected: ["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"], note: "London gap"),
    FireCase(schedule: "daily at 01:30", timezone: "Europe/London", after: "2024-10-26T12:00:00Z",
             expected: ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"], note: "London overlap: first (BST) occurrence"),
    FireCase(schedule: "* * * * *", timezone: "Europe/London", after: "2024-03-31T00:58:30Z",
             expected: ["2024-03-31T00:59:00Z", "2024-03-31T01:00:00Z", "2024-03-31T01:01:00Z"],
             note: "every minute: the gap's minutes collapse into one fire at its end"),
    // Cron.
    FireCase(schedule: "*/15 9-10 * * *", timezone: "UTC", after: "2024-01-01T09:50:00Z",
             expected: ["2024-01-01T10:00:00Z", "2024-01-01T10:15:00Z", "2024-01-01T10:30:00Z", "2024-01-01T10:45:00Z",
                        "2024-01-02T09:00:00Z"], note: "steps and ranges"),
    FireCase(schedule: "0 12 * JAN,JUL MON", timezone: "UTC", after: "2024-06-01T00:00:00Z",
             expected: ["2024-07-01T12:00:00Z", "2024-07-08T12:00:00Z"], note: "month and weekday names"),
    FireCase(schedule: "0 9 13 * 5", timezone: "UTC", after: "2024-09-01T00:00:00Z",
             expected: ["2024-09-06T09:00:00Z", "2024-09-13T09:00:00Z", "2024-09-20T09:00:00Z"],
             note: "day of month and day of week both restricted: either matches (Vixie cron)"),
    FireCase(schedule: "0 0 * * 7", timezone: "UTC", after: "2024-01-01T00:00:00Z",
             expected: ["2024-01-07T00:00:00Z"], note: "Sunday is 7 as well as 0"),
    FireCase(schedule: "0 0 29 2 *", timezone: "UTC", after: "2024-03-01T00:00:00Z",
             expected: ["2028-02-29T00:00:00Z"], note: "leap day waits for the next leap year"),
    FireCase(schedule: "@daily", timezone: "UTC", after: "2024-01-01T00:00:00Z",
             expected: ["2024-01-02T00:00:00Z"], note: "macros"),
    FireCase(schedule: "manual", timezone: "UTC", after: "2024-01-01T00:00:00Z", expected: [], note: "manual never fires"),
]

@Suite("schedules computed by SQL")
struct ScheduleTests {
    @Test("next fire times", arguments: fireCases)
    func nextFireTimes(_ fire: FireCase) async throws {
        try await TestDatabase.withFresh { database, _ in
            let after = try #require(TockJSON.parseTimestamp(fire.after))
            let times = try await database.nextFireTimes(
                schedule: fire.schedule, timezone: fire.timezone, after: after, count: fire.expected.isEmpty ? 3 : fire.expected.count,
                anchor: fire.anchor.flatMap(TockJSON.parseTimestamp))
            #expect(times == fire.expected.compactMap(TockJSON.parseTimestamp), "\(fire.note)")
        }
    }

    @Test("bad schedules and zones are refused with a message naming the field", arguments: [
        ("0 0 32 * *", "UTC", "schedule.cron", "field 3 (day of month) '32' is out of range 1-31"),
        ("61 * * * *", "UTC", "schedule.cron", "field 1 (minute) '61' is out of range 0-59"),
        ("0 0 * 13 *", "UTC", "schedule.cron", "field 4 (month) '13' is out of range 1-12"),
        ("0 0 * * FUNDAY", "UTC", "schedule.cron", "field 5 (day of week)"),
        ("*/0 * * * *", "UTC", "schedule.cron", "step '0'"),
        ("0 0 * *", "UTC", "schedule", "this has 4"),
        ("0 0 30 2 *", "UTC", "schedule.cron", "never fires"),
        ("every 0m", "UTC", "schedule.every", "greater than zero"),
        ("every -5m", "UTC", "schedule.every", "greater than zero"),
        ("every 5 fortnights", "UTC", "schedule.every", "not an interval"),
        ("daily at 24:00", "UTC", "schedule.time", "not a time of day"),
        ("monthly on 0 at 08:00", "UTC", "schedule.day", "day '0' is out of range 1-31"),
        ("monthly on 32 at 08:00", "UTC", "schedule.day", "day '32' is out of range 1-31"),
        ("weekly on funday at 09:00", "UTC", "schedule.weekday", "not a list of weekdays"),
        ("sometimes", "UTC", "schedule", "is not a schedule"),
        ("daily at 06:00", "Mars/Olympus", "timezone", "unknown time zone 'Mars/Olympus'"),
    ])
    func refusesBadInput(schedule: String, timezone: String, field: String, fragment: String) async throws {
        try await TestDatabase.withFresh { database, _ in
            do {
                _ = try await database.nextFireTimes(schedule: schedule, timezone: timezone)
                Issue.record("'\(schedule)' in \(timezone) was accepted")
            } catch let error as TockError {
                #expect(error.kind == .invalidInput)
                #expect(error.field == field)
                #expect(error.message.contains(fragment), "\(error.message)")
            }
        }
    }

    @Test("schedules in words")
    func descriptions() async throws {
        try await TestDatabase.withFresh { database, _ in
            let cases = ["every 5m": "every 5 minutes", "daily at 06:00": "daily at 06:00",
                         "0 9 * * 1-5": "at 09:00 on Mon-Fri", "manual": "manual (run on demand only)",
                         "weekly on mon,thu at 09:30": "at 09:30 on Mon,Thu",
                         "monthly on last at 23:30": "monthly on the last day at 23:30",
                         "monthly on 1,15 at 08:00": "monthly on day 1,15 at 08:00"]
            for (schedule, words) in cases {
                let text = try await database.client.query("SELECT tock.describe_schedule(\(schedule))")
                    .decode(String.self).all().first
                #expect(text == words)
            }
        }
    }
}
