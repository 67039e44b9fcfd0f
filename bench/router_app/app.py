"""The benchmark's web process: the smallest ASGI app, served by uvicorn (uvloop, httptools).

``/port`` answers with the dyno's port, so the benchmark can find both dynos for the nginx
and direct runs; every other path answers a fixed 13-byte body.
"""

import os

PORT = os.environ.get("PORT", "").encode()
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    if scope["path"] == "/port":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(PORT)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": PORT})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
