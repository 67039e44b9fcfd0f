"""Test app for the router's reliability tests: fast answers, slow ones, and who answered.

GET /            -> "ok web.N"
GET|POST /sleep/<seconds> -> waits, then "slept web.N"
GET /whoami      -> {"dyno": "web.N", "pid": ...}
SIGTERM stops it at once (the default): whatever it still had in flight is lost, so only the
router's draining keeps requests from failing when the platform stops it.
"""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DYNO = os.environ.get("DYNO", "?")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/sleep/"):
            time.sleep(float(self.path.removeprefix("/sleep/")))
            self.answer(f"slept {DYNO}".encode())
        elif self.path == "/whoami":
            self.answer(json.dumps({"dyno": DYNO, "pid": os.getpid()}).encode())
        else:
            self.answer(f"ok {DYNO}".encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def answer(self, body: bytes) -> None:
        # One write, head and body: a kill -9 between two writes would leave an answer begun
        # (its head relayed) that no router can take back or retry, which is not what the
        # kill tests measure (they count requests that got no byte of an answer).
        self.log_request(200)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
