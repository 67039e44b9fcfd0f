"""Network test app worker: connects to every TCP port its own user listens on (its app's web
dynos, found in /proc/net/tcp) and says once per port whether it got through."""

import os
import socket
import time

said = set()


def own_listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as file:
            next(file)
            for line in file:
                fields = line.split()
                local, state, uid = fields[1], fields[3], int(fields[7])
                if state == "0A" and uid == os.getuid():  # 0A: LISTEN
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


while True:
    for port in own_listening_ports():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            result = "reached"
        except OSError as exc:
            result = f"could not reach ({type(exc).__name__})"
        if (port, result) not in said:
            said.add((port, result))
            print(f"worker {result} port {port}", flush=True)
    time.sleep(0.2)
