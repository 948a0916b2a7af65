import Foundation
import Hummingbird
import TockCore
import TockPostgres

/// The operator's endpoints: runs by filter and their count, bulk retry/cancel/delete, failures by job, activity
/// over time, and the audit log. Filters and bounds are checked by the SQL they call; these only carry them.
func addOperatorRoutes(to api: RouterGroup<BasicRequestContext>, database: Database) {
    // The most runs of each half a search on trigger, worker or pool reads for one page or count (`?scan=` lowers
    // it): a filter that matches few runs would otherwise read its whole span, a second for a week of a busy history.
    let runSearchBound = 40_000
    api.get("runs") { request, _ -> Response in
        let filter = try QueryFilter(request, keys: QueryFilter.runKeys)
        let limit = try integer(request, "limit", default: 50, range: 1...1000)
        let before = try positiveQueryID(request, "before", what: "run")
        let page = try await database.findRunsPage(filter: filter.json, before: before, limit: limit,
                                                   scan: try integer(request, "scan", default: runSearchBound, range: 1...runSearchBound))
        // A search that stopped at its bound goes on below the oldest run it read, even on a short page.
        var headers = HTTPFields()
        if let searched = page.searchedToId {
            headers = nextPageLink(path: "/api/v1/runs", query: filter.query(limit: limit, before: searched))
            if let at = page.searchedTo { headers[HTTPFields.Element.Name("Tock-Searched-To")!] = TockJSON.formatTimestamp(at) }
        } else if page.runs.count == limit, let last = page.runs.last {
            headers = nextPageLink(path: "/api/v1/runs", query: filter.query(limit: limit, before: last.id))
        }
        return try json(page.runs, headers: headers)
    }
    api.get("runs/count") { request, _ -> Response in
        let action = request.uri.queryParameters.get("action").map { String($0.prefix(40)) }
        let scan = try integer(request, "scan", default: runSearchBound, range: 1...runSearchBound)
        return try json(try await database.countRuns(filter: try QueryFilter(request, keys: QueryFilter.runKeys).json, action: action,
                                                     scan: scan))
    }
    api.post("runs/bulk") { request, _ -> Response in
        let bulk = try await BulkRequest(request)
        return try json(try await database.bulkRuns(bulk.action, ids: bulk.ids, filter: bulk.filter, limit: bulk.limit))
    }
    api.get("failures") { request, _ -> Response in
        let since = request.uri.queryParameters.get("since").map { String($0.prefix(100)) } ?? "24h"
        return try json(try await database.failureGroups(since: since))
    }
    api.get("activity") { request, _ -> Response in
        let hours = try integer(request, "hours", default: 24, range: 1...744)
        // About a hundred bars, each a whole number of minutes.
        return try json(try await database.activity(hours: hours, bucketMinutes: max(1, hours * 60 / 96)))
    }
    api.get("audit") { request, _ -> Response in
        let filter = try QueryFilter(request, keys: ["job", "actor", "action"])
        let limit = try integer(request, "limit", default: 50, range: 1...1000)
        let entries = try await database.audit(job: filter.values["job"], actor: filter.values["actor"], action: filter.values["action"],
                                               before: try positiveQueryID(request, "before", what: "audit entry"), limit: limit)
        guard entries.count == limit, let last = entries.last else { return try json(entries) }
        return try json(entries, headers: nextPageLink(path: "/api/v1/audit", query: filter.query(limit: limit, before: last.id)))
    }
}

/// A list's filters from the query (`?status=failed,dead&job=&since=1h`), each at most 200 characters: as JSON for
/// the SQL that checks them (`tock.find_runs`), and carried into the next page's link.
struct QueryFilter {
    /// The run filters `tock.checked_run_filter` takes.
    static let runKeys = ["status", "job", "trigger", "worker", "pool", "since", "until"]
    let keys: [String]
    var values: [String: String] = [:]

    init(_ request: Request, keys: [String]) throws {
        self.keys = keys
        let query = request.uri.queryParameters
        for key in keys {
            guard let value = query.get(key).map({ String($0) }), !value.isEmpty else { continue }
            guard value.count <= 200 else {
                throw TockError(.invalidInput, field: key, "\(key): at most 200 characters")
            }
            values[key] = value
        }
    }

    /// The filter for SQL, or nil for every run.
    var json: String? {
        guard !values.isEmpty, let data = try? JSONSerialization.data(withJSONObject: values, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// The query of the next page: the same filter, ids below `before`.
    func query(limit: Int, before: Int64) -> String {
        var query = "limit=\(limit)&before=\(before)"
        for key in keys { if let value = values[key] { query += "&\(key)=\(percentEncoded(value))" } }
        return query
    }
}

/// POST /runs/bulk: `{"action": "retry"|"cancel"|"delete", "ids": [1, 2]}` or `{"action": …, "filter": {…},
/// "limit": 1000}`. Shapes are checked here (a field Tock does not know is refused, naming it); values by SQL.
struct BulkRequest {
    var action: String
    var ids: [Int64]?
    var filter: String?
    var limit: Int

    init(_ request: Request) async throws {
        struct Body: Decodable {
            var action: String?
            var ids: [JSONValue]?
            var filter: [String: JSONValue]?
            var limit: Int?
        }
        let text = try await jsonBody(request, limit: 64 * 1024)
        let keys = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?.keys.sorted() ?? []
        if let unknown = keys.first(where: { !["action", "ids", "filter", "limit"].contains($0) }) {
            let name = String(unknown.unicodeScalars.filter { $0.value >= 0x20 }.prefix(40))
            throw TockError(.invalidInput, field: name, "\(name): unknown field; a bulk action takes action, ids or filter, and limit")
        }
        let body: Body
        do {
            body = try JSONDecoder().decode(Body.self, from: Data(text.utf8))
        } catch let error as DecodingError {
            let field: String
            switch error {
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
                field = context.codingPath.first?.stringValue ?? "body"
            case .keyNotFound(let key, _):
                field = key.stringValue
            @unknown default:
                field = "body"
            }
            let expected = ["action": "\"retry\", \"cancel\" or \"delete\"", "ids": "a list of run ids (whole numbers)",
                            "filter": "an object of status, job, trigger, worker, pool, since, until",
                            "limit": "a whole number from 1 to 1000"]
            throw TockError(.invalidInput, field: field, "\(field): expected \(expected[field] ?? "a JSON object")")
        }
        guard let action = body.action else {
            throw TockError(.invalidInput, field: "action", "action: give \"retry\", \"cancel\" or \"delete\"")
        }
        self.action = action
        if let list = body.ids {
            let ids = list.compactMap { value -> Int64? in
                guard case .number(let number) = value, number >= 1, number < 9e15, number == number.rounded() else { return nil }
                return Int64(number)
            }
            guard ids.count == list.count, ids.count <= 1000 else {
                throw TockError(.invalidInput, field: "ids", "ids: at most 1000 run ids, each a positive whole number")
            }
            self.ids = ids
        }
        filter = body.filter.map { JSONValue.object($0).compactText }
        limit = body.limit ?? 1000
        guard (1...1000).contains(limit) else {
            throw TockError(.invalidInput, field: "limit", "limit: a whole number from 1 to 1000")
        }
    }
}

/// A positive id in the query (`?before=`), or nil when absent.
func positiveQueryID(_ request: Request, _ name: String, what: String) throws -> Int64? {
    guard let text = request.uri.queryParameters.get(name) else { return nil }
    guard let id = Int64(text), id > 0 else {
        throw TockError(.invalidInput, field: name, "\(name): '\(text.prefix(40))' is not a \(what) id (a positive whole number)")
    }
    return id
}

func percentEncoded(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
}
