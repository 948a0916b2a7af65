import Foundation
import TockCore
import TockPostgres

extension Database {
    /// Adds a hook from its fields, as the API's POST /hooks sends them (`tock.add_hook_json` checks them).
    public func addHook(fields: [String: Any]) async throws -> NewHook {
        try await addHook(json: String(decoding: try JSONSerialization.data(withJSONObject: fields), as: UTF8.self))
    }
}
