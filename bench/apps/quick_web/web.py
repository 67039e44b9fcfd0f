"""A web process that boots fast: the standard library's socket module and nothing else
(about 20 ms of CPU to start, against about 70 ms for an ``http.server`` app), so that
``bench/scale_latency.py`` measures what the platform adds rather than nine CPU-heavy boots
sharing two cores. Answers every request with its dyno's name, one request per connection."""

import os
import socket

BODY = f"served by {os.environ.get('DYNO', '?')}\n".encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)

if __name__ == "__main__":
    server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=128)
    while True:
        conn, _ = server.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:  # the request's head; a GET has no body
                piece = conn.recv(65536)
                if not piece:
                    break
                head += piece
            else:
                conn.sendall(RESPONSE)
