"""Lifecycle test app: holds HOG_MB megabytes of resident memory, then waits."""

import os
import time

held = []
for _ in range(int(os.environ.get("HOG_MB", "0")) // 10):
    held.append(b"x" * (10 * 1024 * 1024))  # bytes of b"x": every page really touched
    time.sleep(0.005)
print(f"holding {len(held) * 10} MB", flush=True)
while True:
    time.sleep(60)
