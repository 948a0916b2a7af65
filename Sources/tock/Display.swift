import Foundation
import TockCore

/// Times and durations as the tables print them.
enum Display {
    /// A parameter's declaration as `tock job show` lists it: "env (one of staging, prod; default staging)".
    static func param(_ param: ParamDefinition) -> String {
        let rules = [param.required == true ? "required" : nil,
                     param.choices.map { "one of " + $0.joined(separator: ", ") },
                     param.pattern.map { "matching " + $0 },
                     param.default.map { "default " + $0 }].compactMap { $0 }
        return param.name + (rules.isEmpty ? "" : " (" + rules.joined(separator: "; ") + ")")
    }

    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        return date.formatted(Date.VerbatimFormatStyle(
            format: "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits) \(timeZone: .specificName(.short))",
            timeZone: .current, calendar: Calendar(identifier: .gregorian)))
    }

    static func duration(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        if seconds < 1 { return String(format: "%.0fms", seconds * 1000) }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        return DurationText.format(seconds: seconds)
    }
}
