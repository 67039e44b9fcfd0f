"""Swarm test app's worker: a line a second, naming itself."""

import os
import time

while True:
    print(f"worker {os.environ.get('DYNO')} working", flush=True)
    time.sleep(1)
