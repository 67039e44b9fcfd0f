"""Lifecycle test app: ignores SIGTERM, so stopping it takes a SIGKILL (R12)."""

import signal
import time

signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
print("started", flush=True)
while True:
    time.sleep(60)
