"""The router's hot path, compiled: mypyc turns these type-annotated modules into C extensions.

The same Python source runs either way; compiled, the router spends about 40% less CPU per
request (bench/router.py prints it), which on a small machine is the difference between
keeping up with nginx and not. Set ``DYNOS_PURE_PYTHON=1`` when installing to skip it (no C
compiler, or working on the router: an editable install must be reinstalled for a change to
a compiled module to take effect, and ``dynos.router`` refuses to import stale ones).
"""

import os
from pathlib import Path

from setuptools import setup

COMPILED = [
    f"src/dynos/router/{name}.py"
    for name in (
        "balancer",
        "client",
        "exchange",
        "forwarding",
        "http",
        "metrics",
        "request_log",
        "routing_table",
        "upstream",
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


setup(ext_modules=ext_modules())
