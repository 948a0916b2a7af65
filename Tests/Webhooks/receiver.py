"""A webhook receiver for the delivery tests: verifies each POST with the Standard Webhooks reference library.

Usage: receiver.py PORT SECRET LOG MODE, MODE ok (answer 204 to a verified POST), fail (always 500) or slow (answer 204
after 3 s). Each POST appends one JSON line to LOG: the webhook-id, whether the signature verified, whether the same
request with its body changed or with another secret was refused, the HTTP status answered, and the body.
"""
import base64
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT, SECRET, LOG, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
OTHER_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def verifies(secret, body, headers):
    try:
        Webhook(secret).verify(body, headers)
        return True
    except Exception:
        return False


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = verifies(SECRET, body, headers)
        tampered = verifies(SECRET, body + b" ", headers) or verifies(OTHER_SECRET, body, headers)
        if MODE == "slow":
            with open(LOG + ".arrived", "a") as arrived:
                arrived.write((headers.get("webhook-id") or "") + "\n")
            time.sleep(3)
        status = 500 if MODE == "fail" or not verified else 204
        with open(LOG, "a") as log:
            log.write(json.dumps({"id": headers.get("webhook-id"), "verified": verified, "tampered_accepted": tampered,
                                  "status": status, "content_type": headers.get("content-type"),
                                  "body": json.loads(body)}) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
