"""An HTTP server for the HTTP job tests. Usage: server.py PORT LOG. Each request appends one JSON line to LOG (method,
path, headers, body). Paths: /ok answers 200 "pong <body>"; /fail 503; /slow after 5 s; /big 200 with 100 KiB;
/redirect 302 to /ok (which a worker must not follow); /nul 200 with a zero byte; /echo-auth 200 with the Authorization
header's value.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def answer(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0") or 0))
        with open(LOG, "a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path,
                                  "headers": {k.lower(): v for k, v in self.headers.items()},
                                  "body": body.decode("utf-8", "replace")}) + "\n")
        status, payload, extra = 200, b"pong " + body, {}
        if self.path == "/fail":
            status, payload = 503, b"down for maintenance"
        elif self.path == "/slow":
            time.sleep(5)
        elif self.path == "/big":
            payload = b"x" * (100 * 1024)
        elif self.path == "/redirect":
            status, payload, extra = 302, b"", {"location": f"http://127.0.0.1:{PORT}/ok"}
        elif self.path == "/nul":
            payload = b"before\x00after"
        elif self.path == "/echo-auth":
            payload = ("auth " + self.headers.get("authorization", "")).encode()
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
