"""Network test app: says its port and uid; /probe?port=N says whether it can connect there."""

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def probe(port: int) -> str:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__


class Neighbour(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        answer: dict[str, object] = {
            "dyno": os.environ.get("DYNO"),
            "port": int(os.environ["PORT"]),
            "uid": os.getuid(),
            "forwarded_for": self.headers.get("X-Forwarded-For"),
        }
        for port in parse_qs(url.query).get("probe", []):
            answer["probe"] = probe(int(port))
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


# Every address, as many apps bind: the firewall, not the bind address, keeps others out.
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Neighbour).serve_forever()
