"""Lifecycle test app: tells who it runs as and whether it can read a path."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Probe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        answer: dict[str, object] = {"dyno": os.environ.get("DYNO"), "uid": os.getuid()}
        for path in parse_qs(url.query).get("read", []):
            try:
                with open(path, "rb") as file:
                    file.read(1)
                answer[path] = "readable"
            except OSError as exc:
                answer[path] = type(exc).__name__
        body = json.dumps(answer).encode()
        self.send_response(200 if url.path != "/unhealthy" else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


# Every address, as Heroku asks: a container dyno is reached at its own address.
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Probe).serve_forever()
