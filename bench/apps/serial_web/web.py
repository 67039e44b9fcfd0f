"""A web process that serves one request at a time, each taking 50 ms (a sync app server
with one worker, such as gunicorn's default): to scale it, add dynos."""

import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

WORK = 0.05


class Serial(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection, as a sync worker serves

    def do_GET(self) -> None:
        time.sleep(WORK)
        body = f"served by {os.environ.get('DYNO', '?')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the router logs every request already


class Server(HTTPServer):
    request_queue_size = 128  # waiting connections sit in the backlog: none is refused


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Serial).serve_forever()
