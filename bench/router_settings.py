"""Router settings side by side: router processes and priority, measured in one run.

    python bench/router_settings.py [PROCESSES:NICE ...] [--rounds 4] [--duration 5]

Each setting (default: ``1:-10 1:0 2:0 2:-10``; the first is the anchor, the server's
default) gets a ``dynos server`` of its own (``--router-processes``, ``--router-priority``)
with ``bench/router_app`` at web=2, all running at once; wrk (``-t2 -c64``) takes turns on
them, the order reversing every round, so a slow phase of the machine does not land on one
setting only (an idle server costs nothing meanwhile). Prints each run, then per setting the
medians of req/s, p99 and the router processes' CPU per request, and their ratios to the
anchor's. Needs wrk; nice values below 0 need root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from router import Result, cpu_seconds, deploy_app, dynos_server, machine, run_wrk


def setting(text: str) -> tuple[int, int]:
    processes, _, nice = text.partition(":")
    try:
        return int(processes), int(nice or "0")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PROCESSES:NICE, as 2:-10") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="*", type=setting)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    settings: list[tuple[int, int]] = args.settings or [(1, -10), (1, 0), (2, 0), (2, -10)]
    names = [
        f"{processes} process{'es' if processes > 1 else ''}, nice {nice}"
        for processes, nice in settings
    ]
    print(machine())
    with tempfile.TemporaryDirectory(prefix="dynos-bench-") as tmp, ExitStack() as stack:
        os.chmod(tmp, 0o711)  # dynos run as their app's user when the server runs as root
        servers = []
        for n, (processes, nice) in enumerate(settings):
            options = ("--router-processes", str(processes), "--router-priority", str(nice))
            server = stack.enter_context(dynos_server(Path(tmp) / f"home{n}", *options))
            deploy_app(server)
            run_wrk([server.router_port], 2, 64, 1)  # warm up
            servers.append(server)
        results: list[list[Result]] = [[] for _ in settings]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}")
            order = range(len(settings))
            for n in reversed(order) if round_ % 2 else order:
                pid = servers[n].process.pid
                before = cpu_seconds(pid, dynos_server=True)
                result = run_wrk([servers[n].router_port], 2, 64, args.duration)
                used = cpu_seconds(pid, dynos_server=True) - before
                result.cpu_us = used / (result.rps * args.duration) * 1e6
                results[n].append(result)
                print(
                    f"  {names[n]:<22} {result.rps:>8,.0f} req/s  p99 {result.p99_ms:6.2f} ms"
                    f"  CPU {result.cpu_us:5.1f} us/req",
                    flush=True,
                )
    medians = [
        (
            statistics.median(r.rps for r in runs),
            statistics.median(r.p99_ms for r in runs),
            statistics.median(r.cpu_us or 0.0 for r in runs),
        )
        for runs in results
    ]
    anchor = medians[0]
    print(
        f"median of {args.rounds} rounds (wrk -t2 -c64, {args.duration:g} s); ratios to {names[0]}"
    )
    for name, (rps, p99, cpu) in zip(names, medians, strict=True):
        print(
            f"  {name:<22} {rps:>8,.0f} req/s ({rps / anchor[0]:.2f})  p99 {p99:6.2f} ms "
            f"({p99 / anchor[1]:.2f}x)  CPU {cpu:5.1f} us/req ({cpu / anchor[2]:.2f}x)"
        )


if __name__ == "__main__":
    main()
