import Foundation

/// The command line's short forms of parameters. The rules a declaration or a value must follow are checked in SQL
/// (tock.checked_param_defs, tock.resolved_params); these only turn text into the JSON those take.
public enum ParamSpec {
    /// A declaration written `name[:required][:default=VALUE][:choice=A,B,…][:pattern=REGEX]`. The pattern comes
    /// last and takes the rest of the text, colons included; a choice or a default holding ':' or ',' needs the
    /// JSON form (the API, or tock.update_job from psql).
    public static func definition(_ spec: String) throws(InputError) -> ParamDefinition {
        var rest = Substring(spec)
        let name = rest.prefix { $0 != ":" }
        rest = rest.dropFirst(name.count)
        var definition = ParamDefinition(name: String(name))
        while rest.first == ":" {
            rest = rest.dropFirst()
            if rest.hasPrefix("pattern=") {
                definition.pattern = String(rest.dropFirst("pattern=".count))
                break
            }
            let option = rest.prefix { $0 != ":" }
            rest = rest.dropFirst(option.count)
            if option == "required" {
                definition.required = true
            } else if option.hasPrefix("default=") {
                definition.default = String(option.dropFirst("default=".count))
            } else if option.hasPrefix("choice=") || option.hasPrefix("choices=") {
                let list = option.drop { $0 != "=" }.dropFirst()
                definition.choices = list.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            } else {
                throw InputError(field: "param-def", message: """
                    '\(spec)': '\(option)' is not an option of a parameter; give name[:required][:default=VALUE]\
                    [:choice=A,B][:pattern=REGEX]
                    """)
            }
        }
        return definition
    }

    /// Values written `name=value` (the value may hold '='), as the JSON object a trigger sends.
    public static func values(_ assignments: [String]) throws(InputError) -> String? {
        guard !assignments.isEmpty else { return nil }
        let values = try Self.assignments(assignments, field: "param")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Strings keyed by strings always encode.
        return String(decoding: (try? encoder.encode(values)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// `name=value` pairs (a job's --env, a run's --param); a name given twice is refused.
    public static func assignments(_ assignments: [String], field: String) throws(InputError) -> [String: String] {
        var values: [String: String] = [:]
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
                throw InputError(field: field, message: "'\(assignment)' is not name=value")
            }
            let name = String(assignment[..<equals])
            guard values[name] == nil else {
                throw InputError(field: field, message: "\(name) is given twice")
            }
            values[name] = String(assignment[assignment.index(after: equals)...])
        }
        return values
    }
}
