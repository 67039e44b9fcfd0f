"""The hello app's worker process: a background job that ticks every few seconds."""

import os
import time

GREETING = os.environ.get("GREETING", "working")

if __name__ == "__main__":
    n = 0
    while True:
        n += 1
        print(f"{GREETING}: job {n} done", flush=True)
        time.sleep(5)
