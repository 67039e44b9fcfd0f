"""The records the platform hands out, for the API to read and shape.

The API reaches the platform only through :mod:`dynos.platform` (tests/test_architecture.py
holds it to that): these are the store's and the manager's records, and the terminal of an
attached one-off dyno, named here so that api/ need not import store/, manager/ or backends/.
They are read-only to the API: it changes things only by calling a use-case.
"""

from __future__ import annotations

from dynos.backends.attach import Terminal
from dynos.manager.records import DynoRecord as Dyno
from dynos.platform.context import Account
from dynos.store.drains import LogDrain
from dynos.store.models import Addon, App, AppFeature, Domain, Formation, Release, SniEndpoint

__all__ = [
    "Account",
    "Addon",
    "App",
    "AppFeature",
    "Domain",
    "Dyno",
    "Formation",
    "LogDrain",
    "Release",
    "SniEndpoint",
    "Terminal",
]
