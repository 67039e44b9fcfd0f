"""The queue example's worker process: runs jobs from the Redis queue at REDIS_URL.

SimpleWorker runs each job in this process (no fork per job), which suits short jobs. On
SIGTERM (scale down, restart) RQ finishes the job at hand before exiting, so none is lost.
"""

import os
import time

from redis import Redis
from rq import Queue, SimpleWorker

if __name__ == "__main__":
    url = os.environ.get("REDIS_URL")
    if not url:
        # The app restarts on the release that sets REDIS_URL; until then there is nothing to do.
        print("REDIS_URL is not set: add Redis with 'dynos addons:create redis'", flush=True)
        while True:
            time.sleep(3600)
    connection = Redis.from_url(url)
    name = f"{os.environ.get('DYNO', 'worker')}-{os.getpid()}"
    SimpleWorker([Queue(connection=connection)], connection=connection, name=name).work()
