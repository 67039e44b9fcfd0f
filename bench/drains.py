"""Log drain benchmark: the lines per second one drain sustains, and the router's throughput
with a drain attached against without one.

    python bench/drains.py [--duration 5] [--rounds 4] [--only sustain|router]

1. **Sustained lines per second** (``sustain``), for each kind of drain (http, https, syslog,
   syslog+tls): in this process, a ``LogHub`` feeds one ``DrainSender`` (the server's own
   classes, default delivery rules: 10,000 lines held, batches of 500) whose receiver runs in
   a subprocess (dynos.testing.drain_receivers, counting frames only). A producer emits lines
   of 120 bytes as fast as the drain takes them (it waits whenever the buffer is nearly full,
   so nothing is dropped) for ``--duration`` seconds; lines/s is what the receiver counted.
   HTTPS and syslog+tls receivers use a certificate from a CA made for the run.
2. **Router with and without a drain** (``router``): two ``dynos server`` processes side by
   side, each with ``bench/router_app`` at web=2 (as bench/router.py deploys it); the second
   one's app has an HTTP drain to a receiver subprocess (``--drains-allow-loopback``). wrk
   (``-t2 -c64``) takes turns on them, the order reversing every round; the medians of req/s
   and p99 and their ratio, and how many of the drained server's router lines reached the
   receiver (the rest were dropped and said by L10 lines).

Needs wrk (Debian: ``apt-get install -y wrk``) for the second part.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dynos.core.drain_queue import DeliveryRules
from dynos.core.drains import parse_drain_url
from dynos.logs.hub import LogHub
from dynos.platform.drain_sender import DrainSender, stop
from dynos.platform.drain_transports import HttpTransport, SyslogTransport, drain_tls
from dynos.platform.tls_files import ensure_ca, issue

SCHEMES = ("http", "https", "syslog", "syslog+tls")
LINE = 'at=info method=GET path="/bench" host=bench.localhost request_id=%08d ' + "x" * 40


def receive(kind: str, cert_dir: str) -> None:
    """The receiver subprocess: prints its port, then its count at each line on stdin."""
    import ssl

    from dynos.testing.drain_receivers import HttpReceiver, SyslogReceiver

    tls = None
    if kind in ("https", "syslog+tls"):
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(Path(cert_dir) / "chain.pem", Path(cert_dir) / "key.pem")
    receiver: HttpReceiver | SyslogReceiver
    if kind.startswith("http"):
        receiver = HttpReceiver(tls=tls, keep=False)
    else:
        receiver = SyslogReceiver(tls=tls, keep=False)
    receiver.start()
    print(receiver.port, flush=True)
    for _ in sys.stdin:
        print(receiver.received, flush=True)


@contextmanager
def receiver_process(kind: str, cert_dir: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--receive", kind, "--cert-dir", str(cert_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline()), process
    finally:
        process.kill()
        process.wait()


def received(process: subprocess.Popen[str]) -> int:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    return int(process.stdout.readline())


async def sustain(kind: str, port: int, ca: Path, duration: float) -> tuple[int, int]:
    """Lines emitted in ``duration`` s to one drain of ``kind``, and lines dropped."""
    host = "127.0.0.1"
    url = f"{kind}://{host}:{port}/" if kind.startswith("http") else f"{kind}://{host}:{port}"
    target = parse_drain_url(url)
    tls = drain_tls(ca)
    transport = (
        HttpTransport(target, "d.bench", tls, allow_loopback=True)
        if target.http
        else SyslogTransport(target, tls, allow_loopback=True)
    )
    rules = DeliveryRules()
    sender = DrainSender("bench", "d.bench", target, transport, rules)
    hub = LogHub(ring_size=1000)
    hub.add_sink("bench", sender.offer)
    task = asyncio.create_task(sender.run())
    emitted = 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        room = rules.capacity - rules.batch_size - len(sender.queue)
        for _ in range(min(room, 1000)):
            hub.emit("bench", "dynos", "router", LINE % emitted)
            emitted += 1
        await asyncio.sleep(0)
    # What is still held is sent before the count is read.
    while len(sender.queue):
        await asyncio.sleep(0.01)
    await stop(task)
    return emitted, sender.queue.dropped_total


def run_sustain(duration: float, rounds: int, tmp: Path) -> None:
    ca = ensure_ca(tmp / "ca")
    chain, key = issue(ca, ["127.0.0.1"])
    (tmp / "chain.pem").write_bytes(chain)
    (tmp / "key.pem").write_bytes(key)
    print(f"one drain, lines of {len(LINE % 0)} bytes, {duration:g} s runs, {rounds} rounds")
    for kind in SCHEMES:
        rates = []
        for _ in range(rounds):
            with receiver_process(kind, tmp) as (port, process):
                started = time.monotonic()
                emitted, dropped = asyncio.run(sustain(kind, port, tmp / "ca" / "ca.pem", duration))
                elapsed = time.monotonic() - started
                got = received(process)
                assert dropped == 0 and got == emitted, (kind, emitted, got, dropped)
                rates.append(got / elapsed)
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"  {kind:<11} {statistics.median(rates):>9,.0f} lines/s (median; runs {runs})")


def run_router(duration: float, rounds: int, tmp: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from router import Target, cpu_seconds, deploy_app, dynos_server, run_wrk

    with ExitStack() as stack:
        os.chmod(tmp, 0o711)  # dynos run as their app's user when the server runs as root
        plain = stack.enter_context(dynos_server(tmp / "home-plain"))
        drained = stack.enter_context(dynos_server(tmp / "home-drain", "--drains-allow-loopback"))
        for server in (plain, drained):
            deploy_app(server)
        port, receiver = stack.enter_context(receiver_process("http", tmp))
        with drained.api() as api:
            api.post(
                "/apps/bench/log-drains", json={"url": f"http://127.0.0.1:{port}/"}
            ).raise_for_status()
        servers = {"no drain": plain, "http drain": drained}
        for server in servers.values():
            run_wrk(Target([server.router_port]), 2, 64, 1)  # warm up
        time.sleep(1)
        before = received(receiver)
        requests = 0.0
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        for round_ in range(rounds):
            names = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in names:
                pid = servers[name].process.pid
                cpu = cpu_seconds(pid, dynos_server=True)
                result = run_wrk(Target([servers[name].router_port]), 2, 64, duration)
                used = cpu_seconds(pid, dynos_server=True) - cpu
                cpu_us = used / (result.rps * duration) * 1e6
                results[name].append((result.rps, result.p99_ms, cpu_us))
                if name == "http drain":
                    requests += result.rps * duration
                print(
                    f"  round {round_ + 1} {name:<10} {result.rps:>8,.0f} req/s  "
                    f"p99 {result.p99_ms:6.2f} ms  server CPU {cpu_us:5.1f} us/req",
                    flush=True,
                )
        time.sleep(2)  # the drain's last batches
        delivered = received(receiver) - before
    medians = {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(3))
        for name, runs in results.items()
    }
    anchor = medians["no drain"]
    print(f"median of {rounds} rounds (wrk -t2 -c64, {duration:g} s), ratio to no drain")
    for name, (rps, p99, cpu_us) in medians.items():
        print(
            f"  {name:<10} {rps:>8,.0f} req/s ({rps / anchor[0]:.3f})  p99 {p99:6.2f} ms  "
            f"server CPU {cpu_us:5.1f} us/req ({cpu_us / anchor[2]:.2f}x)"
        )
    print(
        f"  router lines delivered to the drain: {delivered:,} of about {requests:,.0f} "
        "requests (wrk's count; the rest were dropped and said by L10 lines)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--only", choices=("sustain", "router"))
    parser.add_argument("--receive", help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive(args.receive, args.cert_dir)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from router import machine

    print(machine())
    with tempfile.TemporaryDirectory(prefix="dynos-bench-") as tmp:
        if args.only in (None, "sustain"):
            run_sustain(args.duration, args.rounds, Path(tmp))
        if args.only in (None, "router"):
            run_router(args.duration, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
