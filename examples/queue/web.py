"""The queue example's web process: enqueues jobs and shows how the queue is doing.

POST /jobs?count=200&seconds=0.1   enqueue jobs (each sleeps `seconds`, then counts its run)
GET  /stats                        JSON: queued, workers, finished, failed, ran, ran_twice,
                                   first_started (epoch seconds the first job since /reset began)
POST /reset                        forget the run counts and first start of earlier jobs
GET  /                             the same as /stats, as text
"""

import json
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from redis import Redis
from rq import Queue, Worker
from tasks import FIRST_START, RUNS, work

MAX_JOBS = 100_000


def stats(connection: Redis) -> dict[str, float | None]:
    queue = Queue(connection=connection)
    runs = [int(n) for n in connection.hvals(RUNS)]
    first = connection.get(FIRST_START)
    return {
        "queued": queue.count,
        "workers": Worker.count(connection=connection),
        "finished": queue.finished_job_registry.count,
        "failed": queue.failed_job_registry.count,
        "ran": len(runs),
        "ran_twice": sum(1 for n in runs if n > 1),
        "first_started": float(first) if first is not None else None,
    }


def enqueue(connection: Redis, count: int, seconds: float) -> dict[str, object]:
    queue = Queue(connection=connection)
    batch = uuid.uuid4().hex[:8]
    jobs = [
        Queue.prepare_data(work, (seconds, f"{batch}-{n}"), result_ttl=3600) for n in range(count)
    ]
    enqueued_at = time.time()
    queue.enqueue_many(jobs)
    return {"batch": batch, "enqueued": count, "enqueued_at": enqueued_at}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connection_: Redis | None = None

    def do_GET(self) -> None:
        redis = self.redis()
        if redis is None:
            return
        path = urlsplit(self.path).path
        if path == "/stats":
            self.answer(200, stats(redis))
        elif path == "/":
            lines = [f"{k}: {v}" for k, v in stats(redis).items()]
            self.answer(200, "\n".join(lines) + "\n")
        else:
            self.answer(404, {"error": f"no page {path}"})

    def do_POST(self) -> None:
        redis = self.redis()
        if redis is None:
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/jobs":
            count = min(int(query.get("count", ["10"])[0]), MAX_JOBS)
            seconds = float(query.get("seconds", ["1"])[0])
            self.answer(201, enqueue(redis, count, seconds))
        elif url.path == "/reset":
            redis.delete(RUNS, FIRST_START)
            self.answer(200, {"reset": True})
        else:
            self.answer(404, {"error": f"no page {url.path}"})

    def redis(self) -> Redis | None:
        url = os.environ.get("REDIS_URL")
        if not url:
            self.answer(503, {"error": "REDIS_URL is not set: run 'dynos addons:create redis'"})
            return None
        if Handler.connection_ is None:
            Handler.connection_ = Redis.from_url(url)
        return Handler.connection_

    def answer(self, status: int, body: object) -> None:
        text = body if isinstance(body, str) else json.dumps(body) + "\n"
        data = text.encode()
        kind = "text/plain" if isinstance(body, str) else "application/json"
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"listening on port {port}", flush=True)
    # Every address, as Heroku asks of web dynos: in a container (--backend docker) the
    # router comes from outside; on the host the platform's firewall guards the port.
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
