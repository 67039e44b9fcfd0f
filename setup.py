"""The router's hot path, compiled: mypyc turns these type-annotated modules into C extensions.

The same Python source runs either way; compiled, the router spends about 40% less CPU per
request (bench/router.py prints it), which on a small machine is the difference between
keeping up with nginx and not. Where the C compiler fails (none installed, no Python
headers), the install goes on without the compiled modules and says so. Set
``DYNOS_PURE_PYTHON=1`` when installing to skip compiling (when working on the router: an
editable install must be reinstalled for a change to a compiled module to take effect, and
``dynos.router`` refuses to import stale ones).
"""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

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


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildOrSkip})
