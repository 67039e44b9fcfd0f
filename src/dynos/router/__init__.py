"""The routing layer: HTTP from clients to an app's web dynos (see proxy.py).

The modules in ``COMPILED`` run on every request; installing dynos compiles them with mypyc
(setup.py), the same source as C extensions. In a source checkout a compiled module older
than its source would run the old code without a word, so importing the router refuses that
and says how to rebuild.
"""

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

# Keep in step with setup.py.
COMPILED = (
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


class StaleBuildError(ImportError):
    pass


def _refuse_stale_builds() -> None:
    here = Path(__file__).parent
    if not (here.parents[2] / "pyproject.toml").exists():
        return  # installed from a wheel: sources and builds came together
    for name in COMPILED:
        source = here / f"{name}.py"
        for suffix in EXTENSION_SUFFIXES:
            build = here / f"{name}{suffix}"
            if build.exists() and source.stat().st_mtime > build.stat().st_mtime:
                raise StaleBuildError(
                    f"{source} changed after it was compiled: run `pip install -e .` again "
                    "(or `DYNOS_PURE_PYTHON=1 pip install -e .` to run the router uncompiled)."
                )


_refuse_stale_builds()
