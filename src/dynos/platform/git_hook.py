"""The pre-receive hook of every app repository: hands the push to the dynos server.

Not imported by dynos: the server copies this file, behind a ``#!<its python> -IS`` line,
to ``<home>/git/hooks/pre-receive`` (platform/git_repos.py), and git runs it for each push,
before it updates any ref. So it uses the standard library only, and starts fast.

The server that started ``git http-backend`` for the push left one end of a socket pair
open in it, and its number in ``$DYNOS_GIT_PUSH_FD``: only that push's processes hold it.
The hook sends one JSON line (the ref updates git gave it on stdin, and where git keeps the
pushed objects until the hook accepts them), then prints every ``{"line": ...}`` the server
answers (git relays the hook's output to the pusher as ``remote:`` lines) and exits with
``{"exit": N}``: non-zero refuses the push, and git updates no ref.
"""

import json
import os
import socket
import sys


def main() -> int:
    fd = os.environ.get("DYNOS_GIT_PUSH_FD", "")
    if not fd.isdigit():
        print("Push rejected: this repository takes pushes through the dynos server only.")
        return 1
    request = {
        "updates": sys.stdin.read(),
        "objects": os.environ.get("GIT_OBJECT_DIRECTORY", ""),
        "alternates": os.environ.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", ""),
        "quarantine": os.environ.get("GIT_QUARANTINE_PATH", ""),
    }
    with socket.socket(fileno=int(fd)) as channel:
        channel.sendall(json.dumps(request).encode() + b"\n")
        channel.shutdown(socket.SHUT_WR)
        with channel.makefile("rb") as answers:
            for raw in answers:
                try:
                    answer = json.loads(raw)
                except ValueError:
                    continue
                if "line" in answer:
                    sys.stdout.write(str(answer["line"]) + "\n")
                    sys.stdout.flush()
                elif "exit" in answer:
                    return int(answer["exit"])
    print("Push rejected: the dynos server stopped during the push; push again.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
