"""The jobs of the queue example: what the worker dynos run."""

import os
import time

from rq import get_current_job

RUNS = "queue-example:runs"  # a hash: job tag -> how many times it ran (exactly 1 expected)
FIRST_START = "queue-example:first-start"  # epoch seconds the first job since /reset started


def work(seconds: float, tag: str) -> str:
    """A stand-in for real background work (an e-mail, a PDF): wait, then count the run."""
    job = get_current_job()
    assert job is not None
    job.connection.set(FIRST_START, time.time(), nx=True)  # for bench/autoscale.py
    time.sleep(seconds)
    job.connection.hincrby(RUNS, tag, 1)
    return f"{tag} done by {os.environ.get('DYNO', '?')}"
