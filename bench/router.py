"""Router benchmark: the dynos router against nginx and against the dynos directly.

    python bench/router.py [--rounds 3] [--duration 5] [--connections 64] [--threads 2]

What runs (all on this machine, which is what the figures are about):

- a real ``dynos server`` (a subprocess, ``--api-port 0 --router-port 0``) with router logging
  on as always, and an app deployed through its API from ``bench/router_app`` (uvicorn with
  uvloop and httptools, a fixed 13-byte answer, no access log), scaled to two web dynos;
- nginx in front of the same two dynos, configured as a user would: ``worker_processes auto``,
  an upstream with ``keepalive``, HTTP/1.1 to the upstream, the default access log on (to a
  file);
- wrk (``-t2 -c64``, 5 s) against (a) the router, (b) nginx, (c) the dynos directly: the last
  is two wrk processes of ``-t1 -c32`` at once, one per dyno; its req/s is their sum, its p50
  the mean of theirs and its p99 the larger one.
- HTTPS (issue 14): the same wrk against the router's HTTPS port and against nginx
  terminating TLS for the same two dynos (``listen ... ssl``, Mozilla's "intermediate"
  settings, the same ECDSA certificate the router serves, from the server's own CA), with
  keep-alive (``router-tls``, ``nginx-tls``) and with a new connection, so a full handshake,
  per request (``Connection: close``: ``router-hs``, ``nginx-hs``; wrk resumes no session).
  wrk sends the app's host as its TLS server name (SNI): it runs in a mount namespace of its
  own whose /etc/hosts names ``bench.localhost`` (the machine's is left alone).
  ``--only http`` or ``--only https`` runs one half.

For the two proxies it also prints the CPU time (user + system, from ``/proc``) the proxy's
processes spent per request during the run: the dynos server process (router, API and manager
together) and nginx's master and workers. On two saturated cores req/s follows the CPU that
wrk, the dynos and the proxy need per request, and this figure moves far less with the
machine's load than req/s does.

The targets take turns in each round (the order rotates), so a slow phase of the machine does
not land on one of them only. Medians over the rounds are compared. Needs ``wrk`` and ``nginx``
on PATH (Debian: ``apt-get install -y wrk nginx``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

APP_DIR = Path(__file__).resolve().parent / "router_app"
APP = "bench"
DOMAIN = "localhost"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float | None = None  # the proxy's CPU time per request, in microseconds


def cpu_seconds(pid: int, *, dynos_server: bool) -> float:
    """User and system CPU time of a proxy so far: process ``pid`` and its children, but of
    a dynos server only its router processes (its other children are the dynos)."""
    root = psutil.Process(pid)
    children = root.children(recursive=True)
    if dynos_server:
        children = [c for c in children if "dynos.router.worker" in c.cmdline()]
    total = 0.0
    for process in (root, *children):
        times = process.cpu_times()
        total += times.user + times.system
    return total


# ---- the dynos server ------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    api_url: str
    router_port: int
    token: str
    https_port: int | None  # None: a server from before the HTTPS listener
    home: Path

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120
        )


@contextmanager
def dynos_server(
    home: Path,
    *options: str,
    extra_env: dict[str, str] | None = None,
    older: bool = False,
) -> Iterator[Server]:
    """A ``dynos server`` with ``options`` (``--router-processes 2``), on free ports;
    ``extra_env`` added to its environment (``PYTHONPATH``: another checkout's dynos);
    ``older`` for a checkout from before the HTTPS and rendezvous listeners (no options
    for their ports: they stay off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNOS_")}
    env.update(extra_env or {})
    command = [sys.executable, "-m", "dynos", "server", "--home", str(home), *options]
    command += ["--api-port", "0", "--router-port", "0", "--router-host", "127.0.0.1"]
    command += [] if older else ["--rendezvous-port", "0", "--https-port", "0"]
    server_log = open(home.parent / "server.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        info_path = home / "server.json"
        wait_until(info_path.exists, 30, "dynos server to start", process)
        info = json.loads(info_path.read_text())
        token = (home / "credentials").read_text().strip()
        yield Server(
            process, info["api_url"], info["router_port"], token, info.get("https_port"), home
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        server_log.close()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise SystemExit(f"gave up waiting for {what}: the process exited")
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


def system_python_version() -> str:
    """The version of the system's python3 (Debian's, built with PGO and LTO): the dynos run
    on it, as they did before builds chose the newest Python on the host (here a pyenv build
    without those optimizations, some 20% slower), so that runs stay comparable."""
    version = subprocess.run(
        ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return version.stdout.strip()


def tarball(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                archive.add(path, arcname=path.name)
        pinned = f"{system_python_version()}\n".encode()
        info = tarfile.TarInfo(".python-version")
        info.size = len(pinned)
        archive.addfile(info, io.BytesIO(pinned))
    return buffer.getvalue()


def deploy_app(server: Server) -> list[int]:
    """Create the app, deploy it, scale it to two web dynos; return the dynos' ports."""
    with server.api() as api:
        api.post("/apps", json={"name": APP}).raise_for_status()
        deploy = api.post(
            f"/apps/{APP}/deploys",
            content=tarball(APP_DIR),
            headers={"Content-Type": "application/gzip"},
        )
        deploy.raise_for_status()
        updates = [{"type": "web", "quantity": 2}]
        api.patch(f"/apps/{APP}/formation", json={"updates": updates}).raise_for_status()

        def both_up() -> bool:
            dynos = api.get(f"/apps/{APP}/dynos").json()
            return len(dynos) == 2 and all(d["state"] == "up" for d in dynos)

        try:
            wait_until(both_up, 60, "two web dynos up")
        except SystemExit:
            session = api.post(f"/apps/{APP}/log-sessions", json={"lines": 30}).json()
            print(httpx.get(session["logplex_url"], timeout=10).text)
            raise
    ports: set[int] = set()
    router = f"http://127.0.0.1:{server.router_port}/port"
    with httpx.Client(headers={"Host": f"{APP}.{DOMAIN}"}) as http:
        for _ in range(100):
            ports.add(int(http.get(router).text))
            if len(ports) == 2:
                break
    if len(ports) != 2:
        raise SystemExit(f"the router reached only the dynos on ports {sorted(ports)}")
    return sorted(ports)


# ---- nginx -----------------------------------------------------------------------------

NGINX_CONF = """\
{user}worker_processes auto;
worker_priority {priority};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream dynos {{
        server 127.0.0.1:{port1};
        server 127.0.0.1:{port2};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://dynos;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
    # TLS as https://ssl-config.mozilla.org/ writes it for nginx 1.22, "intermediate".
    server {{
        listen 127.0.0.1:{tls_listen} ssl;
        server_name {host};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers off;
        ssl_session_timeout 1d;
        ssl_session_cache shared:MozSSL:10m;
        ssl_session_tickets off;
        location / {{
            proxy_pass http://dynos;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def nginx(
    prefix: Path, dyno_ports: list[int], priority: int, tls_dir: Path
) -> Iterator[tuple[int, int, int]]:
    """nginx in front of the dynos, also terminating TLS with the certificate the router
    serves for the app: yields its port, its TLS port and its master process's pid."""
    from dynos.router.tls import INTERMEDIATE_CIPHERS

    listen, tls_listen = free_port(), free_port()
    conf = prefix / "nginx.conf"
    host = f"{APP}.{DOMAIN}"
    conf.write_text(
        NGINX_CONF.format(
            prefix=prefix,
            port1=dyno_ports[0],
            port2=dyno_ports[1],
            listen=listen,
            tls_listen=tls_listen,
            host=host,
            chain=tls_dir / "issued" / f"{host}.pem",
            key=tls_dir / "issued" / f"{host}.key",
            ciphers=INTERMEDIATE_CIPHERS,
            priority=priority,
            # As root the server closes dyno ports to all but its own uid and the app's
            # (docs/security.md): nginx's workers must run as root too to reach the dynos,
            # as the router does, instead of as nobody.
            user="user root;\n" if os.geteuid() == 0 else "",
        )
    )
    process = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(listen), 10, "nginx to listen", process)
        yield listen, tls_listen, process.pid
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# ---- wrk -------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if match is None:
        raise SystemExit(f"no {percentile}% latency in wrk's output:\n{output}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Result:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if rps is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Result(float(rps.group(1)), _latency(output, "50"), _latency(output, "99"), errors)


@dataclass(frozen=True)
class Target:
    ports: list[int]
    tls: bool = False  # https://bench.localhost:PORT/, the app's host as the server name
    close: bool = False  # Connection: close: a new connection (a handshake) per request


HOSTS_FILE = Path(tempfile.gettempdir()) / f"dynos-bench-hosts-{os.getpid()}"


def wrk_command(
    port: int, threads: int, connections: int, duration: float, target: Target
) -> list[str]:
    command = [
        *("wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"),
        *("-H", f"Host: {APP}.{DOMAIN}"),
    ]
    if target.close:
        command += ["-H", "Connection: close"]
    if not target.tls:
        return [*command, f"http://127.0.0.1:{port}/"]
    # wrk sends its URL's host as the TLS server name, and must resolve it: in a mount
    # namespace of its own, /etc/hosts is a copy that names the app's host.
    HOSTS_FILE.write_text(f"127.0.0.1 localhost {APP}.{DOMAIN}\n")
    wrk = " ".join(
        [*command[:5], "-H", f"'Host: {APP}.{DOMAIN}'"]
        + (["-H", "'Connection: close'"] if target.close else [])
    )
    return [
        *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
        f"mount --bind {HOSTS_FILE} /etc/hosts && exec {wrk} https://{APP}.{DOMAIN}:{port}/",
    ]


def run_wrk(target: Target, threads: int, connections: int, duration: float) -> Result:
    """wrk against one port, or split evenly over several at once (the direct run)."""
    ports = target.ports
    share = len(ports)
    processes = [
        subprocess.Popen(
            wrk_command(
                port, max(1, threads // share), max(1, connections // share), duration, target
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    results = [parse_wrk(p.communicate(timeout=duration + 60)[0]) for p in processes]
    return Result(
        sum(r.rps for r in results),
        statistics.fmean(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


# ---- the report ------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nginx_version = subprocess.run(
        ["nginx", "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    wrk_version = subprocess.run(
        ["wrk", "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    import httptools
    import uvicorn
    import uvloop

    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, uvloop {uvloop.__version__}, "
        f"httptools {httptools.__version__}, uvicorn {uvicorn.__version__}, "
        f"{nginx_version.removeprefix('nginx version: ')}, {wrk_version.split(' [')[0]}"
    )


def median_cpu(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def show(name: str, result: Result) -> str:
    errors = f"  errors {result.errors}" if result.errors else ""
    cpu = f"  CPU {result.cpu_us:5.1f} us/req" if result.cpu_us is not None else ""
    return (
        f"  {name:<10} {result.rps:>10,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms{cpu}{errors}"
    )


def ratios(label: str, results: dict[str, list[Result]], median: dict[str, Result]) -> None:
    """``label``/nginx's: of the medians, and within each round (the two ran a few seconds
    apart), then their median: steadier when the machine's speed drifts between rounds."""
    ours, theirs = ("router", "nginx") if label == "http" else (f"router-{label}", f"nginx-{label}")
    router, nginx_ = median[ours], median[theirs]
    print(
        f"{ours}/{theirs}: throughput {router.rps / nginx_.rps:.2f}, "
        f"p99 {router.p99_ms / nginx_.p99_ms:.2f}x"
    )
    pairs = list(zip(results[ours], results[theirs], strict=True))
    per_round = [r.rps / n.rps for r, n in pairs]
    per_round_p99 = [r.p99_ms / n.p99_ms for r, n in pairs]
    print(
        f"{ours}/{theirs} per round: throughput "
        + " ".join(f"{x:.2f}" for x in per_round)
        + f" (median {statistics.median(per_round):.2f}), p99 "
        + " ".join(f"{x:.2f}" for x in per_round_p99)
        + f" (median {statistics.median(per_round_p99):.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--router-processes", type=int, default=1, help="the server's router processes"
    )
    parser.add_argument(
        "--nginx-worker-priority",
        type=int,
        default=0,
        help="nginx's worker_priority (0, its default, as a user would leave it; -10 gives "
        "nginx the router's own priority)",
    )
    parser.add_argument(
        "--only", choices=("http", "https"), help="run only the HTTP or the HTTPS targets"
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "unshare"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y wrk nginx")

    print(machine())
    with tempfile.TemporaryDirectory(prefix="dynos-bench-") as tmp:
        os.chmod(tmp, 0o711)  # dynos run as their app's user when the server runs as root
        prefix = Path(tmp) / "nginx"
        prefix.mkdir()
        with dynos_server(
            Path(tmp) / "home", "--router-processes", str(args.router_processes)
        ) as server:
            dyno_ports = deploy_app(server)
            with nginx(prefix, dyno_ports, args.nginx_worker_priority, server.home / "tls") as (
                nginx_port,
                nginx_tls,
                nginx_pid,
            ):
                targets: dict[str, Target] = {}
                if args.only != "https":
                    targets["router"] = Target([server.router_port])
                    targets["nginx"] = Target([nginx_port])
                    targets["direct"] = Target(dyno_ports)
                if args.only != "http":
                    targets["router-tls"] = Target([server.https_port], tls=True)
                    targets["nginx-tls"] = Target([nginx_tls], tls=True)
                    targets["router-hs"] = Target([server.https_port], tls=True, close=True)
                    targets["nginx-hs"] = Target([nginx_tls], tls=True, close=True)
                try:
                    results = run_rounds(args, targets, server.process.pid, nginx_pid)
                finally:
                    HOSTS_FILE.unlink(missing_ok=True)

    median = {
        name: Result(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.errors for r in runs),
            median_cpu([r.cpu_us for r in runs]),
        )
        for name, runs in results.items()
    }
    print(
        f"median of {args.rounds} rounds (wrk -t{args.threads} -c{args.connections}, "
        f"{args.duration:g} s)"
    )
    for name, result in median.items():
        print(show(name, result))
    if args.only != "https":
        ratios("http", results, median)
        router, direct = median["router"], median["direct"]
        print(
            f"router/direct: throughput {router.rps / direct.rps:.2f}, "
            f"p99 {router.p99_ms / direct.p99_ms:.2f}x"
        )
    if args.only != "http":
        ratios("tls", results, median)
        ratios("hs", results, median)


def run_rounds(
    args: argparse.Namespace, targets: dict[str, Target], server_pid: int, nginx_pid: int
) -> dict[str, list[Result]]:
    # The server process and its router processes; nginx's master and workers.
    proxy_pid = {
        name: server_pid if name.startswith("router") else nginx_pid
        for name in targets
        if name != "direct"
    }
    for target in targets.values():  # warm up: connections, pools, caches
        run_wrk(target, args.threads, args.connections, 1)
    results: dict[str, list[Result]] = {name: [] for name in targets}
    names = list(targets)
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}")
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            pid = proxy_pid.get(name)
            router = name.startswith("router")
            cpu_before = cpu_seconds(pid, dynos_server=router) if pid else 0.0
            result = run_wrk(targets[name], args.threads, args.connections, args.duration)
            if pid:
                used = cpu_seconds(pid, dynos_server=router) - cpu_before
                result.cpu_us = used / (result.rps * args.duration) * 1e6
            results[name].append(result)
            print(show(name, result), flush=True)
    return results


if __name__ == "__main__":
    main()
