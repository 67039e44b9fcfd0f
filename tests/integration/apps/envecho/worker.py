"""Test app worker: says it started, then waits for work that never comes."""

import os
import time

print(f"worker {os.environ.get('DYNO')} started", flush=True)
while True:
    time.sleep(60)
