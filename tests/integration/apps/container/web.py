"""Container test app: says which interpreter runs it and that its requirement is installed."""

import json
import os
import platform
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import six  # from requirements.txt: the build installed it into the slug's .venv


class Probe(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "dyno": os.environ.get("DYNO"),
                "port": os.environ.get("PORT"),
                "uid": os.getuid(),
                "home": os.environ.get("HOME"),
                "executable": sys.executable,
                "prefix": sys.base_prefix,
                "version": platform.python_version(),
                "six": six.__version__,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


print(f"listening on port {os.environ['PORT']}", flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Probe).serve_forever()
