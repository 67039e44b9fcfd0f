"""What collecting the metrics (issue 16) costs the router: this checkout against an anchor
checkout without them, side by side in one run.

    python bench/router_metrics.py ANCHOR_CHECKOUT [--rounds 6] [--duration 5]
                                   [--router-processes 1]

ANCHOR_CHECKOUT is a source tree of dynos from before the metrics (``git archive <commit> |
tar -x -C DIR``) with its router compiled in place (``python setup.py build_ext --inplace``
there). Two ``dynos server`` processes run at once, each with ``bench/router_app`` at web=2:
the anchor (``PYTHONPATH=ANCHOR/src``, so its router has no service or queue histograms, no
H-code counts and no metrics reader in the server) and this checkout's (everything on, as
shipped: the one-second reading of the router's figures, the per-minute writes, the memory
and load samples). wrk (``-t2 -c64``) takes turns on them, the order reversing every round;
per round it prints req/s, p99 and the router's CPU per request, then the medians and the
ratios of this checkout to the anchor, of the medians and within each round. Needs wrk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from router import APP, Result, Target, cpu_seconds, deploy_app, dynos_server, machine, run_wrk


def _server_help(src: Path) -> str:
    """``dynos server --help`` as the checkout at ``src`` prints it."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "dynos", "server", "--help"]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("anchor", type=Path, help="a dynos checkout without the metrics")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--router-processes", type=int, default=1)
    parser.add_argument(
        "--candidate",
        type=Path,
        help="run this checkout in place of this one (the anchor itself: a control for the "
        "servers' positions)",
    )
    args = parser.parse_args()
    anchor_src = (args.anchor / "src").resolve()
    if not (anchor_src / "dynos").is_dir():
        raise SystemExit(f"{args.anchor} is not a dynos checkout (no src/dynos)")
    names = ("anchor", "metrics")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="dynos-bench-") as tmp, ExitStack() as stack:
        os.chmod(tmp, 0o711)  # dynos run as their app's user when the server runs as root
        servers = []
        for name in names:
            src = anchor_src if name == "anchor" else None
            if name == "metrics" and args.candidate is not None:
                src = (args.candidate / "src").resolve()
            extra = {"PYTHONPATH": str(src)} if src is not None else None
            home = Path(tmp) / name / "home"
            home.parent.mkdir()
            options = ("--router-processes", str(args.router_processes))
            # A checkout from before the HTTPS listener has no --https-port.
            older = src is not None and "--https-port" not in _server_help(src)
            server = stack.enter_context(dynos_server(home, *options, extra_env=extra, older=older))
            deploy_app(server)
            servers.append(server)
        # Which code each runs: only this checkout answers the metrics API.
        for name, server in zip(names, servers, strict=True):
            with server.api() as api:
                status = api.get(f"/apps/{APP}/metrics").status_code
            print(f"{name}: GET /apps/{APP}/metrics -> {status}")
            if args.candidate is None:
                assert (status == 200) == (name == "metrics"), "the anchor runs this code"
        for server in servers:  # warm up
            run_wrk(Target([server.router_port]), 2, 64, 1)
        results: list[list[Result]] = [[], []]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}")
            order = (1, 0) if round_ % 2 else (0, 1)
            for n in order:
                pid = servers[n].process.pid
                before = cpu_seconds(pid, dynos_server=True)
                result = run_wrk(Target([servers[n].router_port]), 2, 64, args.duration)
                used = cpu_seconds(pid, dynos_server=True) - before
                result.cpu_us = used / (result.rps * args.duration) * 1e6
                results[n].append(result)
                print(
                    f"  {names[n]:<8} {result.rps:>8,.0f} req/s  p99 {result.p99_ms:6.2f} ms"
                    f"  CPU {result.cpu_us:5.1f} us/req  errors {result.errors}",
                    flush=True,
                )
        if args.candidate is None:
            with servers[1].api() as api:  # the metrics saw the load: a sanity check
                answer = api.get(f"/apps/{APP}/metrics").json()
            counted = sum(v or 0 for v in answer["series"]["requests_2xx"])
            p95 = [v for v in answer["series"]["response_time_p95_ms"] if v is not None]
            print(f"metrics: {counted:,} requests counted in the last hour, p95 {p95[-3:]} ms")
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
        f"median of {args.rounds} rounds (wrk -t2 -c64, {args.duration:g} s, "
        f"{args.router_processes} router process(es)); ratios to the anchor"
    )
    for name, (rps, p99, cpu) in zip(names, medians, strict=True):
        print(
            f"  {name:<8} {rps:>8,.0f} req/s ({rps / anchor[0]:.3f})  p99 {p99:6.2f} ms "
            f"({p99 / anchor[1]:.2f}x)  CPU {cpu:5.1f} us/req ({cpu / anchor[2]:.3f}x)"
        )
    per_round = [m.rps / a.rps for a, m in zip(results[0], results[1], strict=True)]
    cpu_round = [(m.cpu_us or 0) / (a.cpu_us or 1) for a, m in zip(*results, strict=True)]
    print(
        "metrics/anchor per round: throughput "
        + " ".join(f"{x:.3f}" for x in per_round)
        + f" (median {statistics.median(per_round):.3f}); CPU per request "
        + " ".join(f"{x:.3f}" for x in cpu_round)
        + f" (median {statistics.median(cpu_round):.3f})"
    )


if __name__ == "__main__":
    main()
