import Foundation

/// Durations as people type them: `90s`, `10m`, `2h`, `1h30m`, `1d`, or plain seconds (`45`).
public enum DurationText {
    /// The number of seconds `text` denotes; `field` names the flag in the error.
    public static func seconds(_ text: String, field: String = "timeout") throws(InputError) -> Double {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let plain = Double(trimmed), plain.isFinite {
            guard plain > 0 else { throw InputError(field: field, message: "'\(text)' must be longer than zero") }
            guard plain <= 315_360_000 else { throw InputError(field: field, message: "'\(text)' is longer than 10 years") }
            return plain
        }
        var total = 0.0
        var digits = ""
        var sawUnit = false
        for character in trimmed {
            if character.isNumber || character == "." {
                digits.append(character)
                continue
            }
            let unit: Double
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default:
                throw InputError(field: field, message: "'\(text)' is not a duration (use e.g. 90s, 10m, 2h, 1h30m)")
            }
            guard let amount = Double(digits) else {
                throw InputError(field: field, message: "'\(text)' is not a duration (use e.g. 90s, 10m, 2h, 1h30m)")
            }
            total += amount * unit
            digits = ""
            sawUnit = true
        }
        guard sawUnit, digits.isEmpty else {
            throw InputError(field: field, message: "'\(text)' is not a duration (use e.g. 90s, 10m, 2h, 1h30m)")
        }
        guard total > 0 else { throw InputError(field: field, message: "'\(text)' must be longer than zero") }
        // Far beyond any bound a setting has (the database names those), but within what an interval holds.
        guard total <= 315_360_000 else { throw InputError(field: field, message: "'\(text)' is longer than 10 years") }
        return total
    }

    /// Seconds as the shortest readable text: `45s`, `10m`, `1h30m`.
    public static func format(seconds: Double) -> String {
        if seconds < 60, seconds != seconds.rounded() { return String(format: "%.3gs", seconds) }
        var rest = Int(seconds.rounded())
        var parts: [String] = []
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            parts.append("\(rest / size)\(unit)")
            rest %= size
        }
        return parts.isEmpty ? "0s" : parts.joined()
    }
}


extension Duration {
    /// Whole milliseconds, rounded toward zero: what poll() and SQL intervals are given.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
