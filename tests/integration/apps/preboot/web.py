"""Preboot test app: boots in BOOT_DELAY seconds; /health answers "healthy" (or 503 with
HEALTH=fail); /live fails once /break was asked; / tells its dyno and VERSION."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

time.sleep(float(os.environ.get("BOOT_DELAY", "0")))
broken = False


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes

    def do_GET(self) -> None:
        global broken
        status, body = 200, b""
        if self.path == "/health":
            healthy = os.environ.get("HEALTH", "ok") == "ok"
            status, body = (200, b"healthy") if healthy else (503, b"sick")
        elif self.path == "/live":
            status, body = (500, b"broken") if broken else (200, b"alive")
        elif self.path == "/break":
            broken, body = True, b"broken now"
        else:
            answer = {"dyno": os.environ.get("DYNO"), "version": os.environ.get("VERSION")}
            body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
