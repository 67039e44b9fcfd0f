"""The routing layer: HTTP from clients to an app's web dynos (see proxy.py).

The modules that run on every request are compiled with mypyc when dynos is installed (the
list is in setup.py): the same source as C extensions, which Python imports instead of the
``.py`` files. In a source checkout, a compiled module older than its source would run the old
code without a word, so importing the router refuses that and says how to rebuild.
"""

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path


class StaleBuildError(ImportError):
    pass


def compiled() -> bool:
    """Whether the router's hot path runs compiled (setup.py), as the server says at start."""
    from dynos.router import client

    return not (client.__file__ or "").endswith(".py")


def refuse_stale_builds(directory: Path) -> None:
    """Raise StaleBuildError if a compiled module in ``directory`` is older than its source."""
    for suffix in EXTENSION_SUFFIXES:
        for build in directory.glob(f"*{suffix}"):
            source = directory / (build.name.removesuffix(suffix) + ".py")
            if source.exists() and source.stat().st_mtime > build.stat().st_mtime:
                raise StaleBuildError(
                    f"{source} changed after it was compiled: run `pip install -e .` again "
                    "(or `DYNOS_PURE_PYTHON=1 pip install -e .` to run the router uncompiled)."
                )


_HERE = Path(__file__).parent
if _HERE.parents[1].name == "src" and (_HERE.parents[2] / "setup.py").exists():
    refuse_stale_builds(_HERE)  # a source checkout: an editable install
