"""The hello app's web process: answers every request with a greeting from its dyno."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server's defaults cost 40 ms per request on a kept-alive connection: the headers
    # and the body go out in two writes, and Nagle's algorithm holds the second until the
    # client's delayed ACK of the first. Buffer the response (one write, flushed after each
    # request) and send at once (TCP_NODELAY).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = f"Hello from {os.environ.get('DYNO', '?')}!\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"listening on port {port}", flush=True)
    # Every address, as Heroku asks of web dynos: in a container (--backend docker) the
    # router comes from outside; on the host the platform's firewall guards the port.
    ThreadingHTTPServer(("0.0.0.0", port), Hello).serve_forever()
