import Foundation
import Hummingbird

/// The web portal (plain HTML, CSS and JavaScript: no build step, no CDN) and the OpenAPI document, bundled
/// with the binary and held in memory. `TOCK_PORTAL_DIR` serves the portal from a directory instead, read on
/// every request, to try an edit without rebuilding.
enum PortalFiles {
    static let resources: URL? = Bundle.module.url(forResource: "Resources", withExtension: nil)

    static let openAPI: ByteBuffer = load("openapi.json") ?? ByteBuffer(string: #"{"error": "openapi.json is missing from this build"}"#)

    static let portal: [String: ByteBuffer] = {
        var files: [String: ByteBuffer] = [:]
        for name in ["index.html", "app.js", "charts.js", "operator.js", "style.css"] { files[name] = load("portal/\(name)") }
        return files
    }()

    static func load(_ path: String) -> ByteBuffer? {
        guard let url = resources?.appendingPathComponent(path), let data = try? Data(contentsOf: url) else { return nil }
        return ByteBuffer(bytes: data)
    }

    static func contentType(_ name: String) -> String {
        if name.hasSuffix(".html") { return "text/html; charset=utf-8" }
        if name.hasSuffix(".js") { return "text/javascript; charset=utf-8" }
        if name.hasSuffix(".css") { return "text/css; charset=utf-8" }
        return "application/octet-stream"
    }

    static func file(_ name: String) -> ByteBuffer? {
        if let directory = ProcessInfo.processInfo.environment["TOCK_PORTAL_DIR"], !directory.isEmpty {
            return (try? Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(name))).map { ByteBuffer(bytes: $0) }
        }
        return portal[name]
    }

    static func addRoutes(to router: Router<BasicRequestContext>) {
        @Sendable func serve(_ name: String) throws -> Response {
            guard portal.keys.contains(name), let body = file(name) else { throw HTTPError(.notFound) }
            return Response(status: .ok, headers: [.contentType: contentType(name), .cacheControl: "no-cache"],
                            body: .init(byteBuffer: body))
        }
        router.get("/") { _, _ in try serve("index.html") }
        router.get("portal/:file") { _, context in try serve(try context.parameters.require("file")) }
    }
}
