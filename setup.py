"""The router's hot path, compiled: mypyc turns these type-annotated modules into C extensions.

The same Python source runs either way; compiled, the router spends about 40% less CPU per
request (bench/router.py prints it), which on a small machine is the difference between
keeping up with nginx and not. Where the C compiler fails (none installed, no Python
headers), the install goes on without the compiled modules and says so. Set
``DYNOS_PURE_PYTHON=1`` when installing to skip compiling (when working on the router: an
editable install must be reinstalled for a change to a compiled module to take effect, and
``dynos.router`` refuses to import stale ones).

The dashboard's plotting library, uPlot, comes from the npm registry at build time: ``npm
pack`` fetches the pinned version, its tarball is checked against the pinned sha512 (the
registry's ``dist.integrity``), and its built files are put in the package
(``dynos/dashboard/static/vendor/``), so that a wheel ships them and its users never need npm.
Without npm (or with a tarball that fails the check) the build goes on without them, and
says so: the dashboard then works without plots.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

COMPILED = [
    f"src/dynos/router/{name}.py"
    for name in (
        "answer",
        "balancer",
        "client",
        "dyno_slot",
        "exchange",
        "exchange_state",
        "forwarding",
        "http",
        "metrics",
        "pipeline",
        "request_head",
        "request_log",
        "retry",
        "route",
        "routing_table",
        "tunnel",
        "upstream",
        "upstream_listener",
    )
]


def remove_builds() -> None:
    """Remove compiled modules an earlier editable install left beside the sources: Python
    would import them instead of the source files."""
    root = Path(__file__).parent
    for path in map(Path, COMPILED):
        for build in (root / path.parent).glob(f"{path.stem}.*.so"):
            build.unlink()
    for shared in (root / "src").glob("*__mypyc.*.so"):
        shared.unlink()


def ext_modules() -> list[object]:
    if os.environ.get("DYNOS_PURE_PYTHON"):
        remove_builds()
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3"))


class BuildOrSkip(build_ext):
    """Compile the router, or leave it in pure Python when the compiler cannot."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, a missing compiler: the distutils zoo
            remove_builds()
            print(
                f"WARNING: could not compile the router ({exc}); it runs as pure Python, "
                "slower. Install a C compiler and the Python headers (apt-get install -y gcc "
                "python3-dev) and reinstall to compile it.",
                file=sys.stderr,
            )


UPLOT_VERSION = "1.6.32"
UPLOT_INTEGRITY = (  # `npm view uplot@1.6.32 dist.integrity`
    "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
)
UPLOT_FILES = {  # in the tarball -> in dynos/dashboard/static/vendor/
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot.LICENSE",
}
VENDOR = Path(__file__).parent / "src" / "dynos" / "dashboard" / "static" / "vendor"


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch_uplot() -> None:
    """Put uPlot's built files in the package, unless this version's are there already."""
    stamp = VENDOR / "uplot.integrity"
    fetched = stamp.exists() and stamp.read_text().strip() == UPLOT_INTEGRITY
    if fetched and all((VENDOR / name).exists() for name in UPLOT_FILES.values()):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (apt-get install -y npm)")
    with tempfile.TemporaryDirectory(prefix="dynos-uplot-") as scratch:
        subprocess.run(
            [npm, "pack", f"uplot@{UPLOT_VERSION}", "--pack-destination", scratch, "--silent"],
            check=True,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
        )
        tarball = Path(scratch) / f"uplot-{UPLOT_VERSION}.tgz"
        data = tarball.read_bytes()
        if integrity(data) != UPLOT_INTEGRITY:
            raise RuntimeError(f"uplot-{UPLOT_VERSION}.tgz does not match its pinned sha512")
        VENDOR.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for member, name in UPLOT_FILES.items():
                source = archive.extractfile(member)
                if source is None:
                    raise RuntimeError(f"uplot-{UPLOT_VERSION}.tgz has no {member}")
                (VENDOR / name).write_bytes(source.read())
    stamp.write_text(UPLOT_INTEGRITY + "\n")


class BuildPyWithAssets(build_py):
    """Fetch the dashboard's uPlot before the package's files are copied (or, for an
    editable install, used where they are)."""

    def run(self) -> None:
        try:
            fetch_uplot()
        except (OSError, RuntimeError, subprocess.CalledProcessError, tarfile.TarError) as exc:
            print(
                f"WARNING: could not fetch uPlot {UPLOT_VERSION} for the dashboard ({exc}); "
                "its plots will be missing. Install npm (apt-get install -y npm) and reinstall.",
                file=sys.stderr,
            )
        super().run()


setup(
    ext_modules=ext_modules(),
    cmdclass={"build_ext": BuildOrSkip, "build_py": BuildPyWithAssets},
)
