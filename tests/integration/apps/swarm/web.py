"""Swarm test app: says which dyno and node answered (no requirements: nothing to build)."""

import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Probe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "dyno": os.environ.get("DYNO"),
                "port": os.environ.get("PORT"),
                "greeting": os.environ.get("GREETING"),
                "uid": os.getuid(),
                "hostname": socket.gethostname(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


print(f"{os.environ.get('DYNO')} listening on {os.environ['PORT']}", flush=True)
sys.stdout.flush()
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Probe).serve_forever()
