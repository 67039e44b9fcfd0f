"""Test app: answers with its dyno name and its whole environment as JSON."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/crash":
            os._exit(3)
        body = json.dumps(
            {"dyno": os.environ.get("DYNO"), "env": dict(os.environ), "prefix": sys.prefix}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"request {format % args}", flush=True)


print(f"booting {os.environ.get('DYNO')}", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
