"""A ``git push``, deployed: what the pre-receive hook hands the server, built and released
as ``dynos deploy`` does, its output streamed back to the pusher.

The hook (platform/git_hook.py) sends the ref updates and where git keeps the pushed
objects until it accepts them (its quarantine), then relays every line this module answers
(git shows them as ``remote:`` lines) and exits with the status answered last: 0 lets git
update the ref, anything else refuses the push and leaves every ref as it was.

What a push does is core/git_push.py's rule (:func:`~dynos.core.git_push.plan_push`).
A deploy: check the pushed history is whole (a shallow clone's is not, and git would refuse
its ref after the build), ``git archive`` the pushed tree, unpack it as an upload is
(platform/slug_archive.py: the same checks and limits), and run ``Releases.deploy``: the
build, the release, and its release phase. One push of an app deploys at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dynos.core.git_push import SHALLOW_LINES, Deploy, RefUpdate, parse_ref_updates, plan_push
from dynos.errors import DynosError, UserError
from dynos.platform.build import Slug
from dynos.platform.git_command import git_succeeds, run_git
from dynos.platform.release_phase import Heartbeat
from dynos.platform.releases import Releases
from dynos.store.models import App, Release

log = logging.getLogger(__name__)

MAX_REQUEST = 1024 * 1024  # the hook's JSON line: the ref updates of one push
Say = Callable[[str], Awaitable[None]]


class GitPushes:
    """Serves the pre-receive hooks of pushes. ``web_url``: where an app is served, with
    ``{app}`` for its name; ``scratch``: where pushed trees are archived (server only)."""

    def __init__(self, releases: Releases, web_url: str, scratch: Path) -> None:
        self._releases = releases
        self._web_url = web_url
        self.scratch = scratch
        self._deploying: set[str] = set()  # app ids with a push deploying

    async def serve(self, app: App, repo: Path, channel: socket.socket) -> None:
        """Answer the hook at the other end of ``channel``, until it has its exit status
        or is gone. Never raises (but CancelledError): a failure is the push's refusal."""
        reader, writer = await asyncio.open_connection(sock=channel, limit=MAX_REQUEST)

        async def say(line: str) -> None:
            writer.write(json.dumps({"line": line}).encode() + b"\n")
            await writer.drain()

        try:
            try:
                request = json.loads(await reader.readline())
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError:
                await say("Push rejected: the hook's request was not understood.")
                status = 1
            else:
                status = await self._handled(app, repo, request, say)
            writer.write(json.dumps({"exit": status}).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the hook is gone: git refuses the push without it
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _handled(self, app: App, repo: Path, request: dict[str, Any], say: Say) -> int:
        """:meth:`_push`, and a bug of the platform's a refusal that says where to look."""
        try:
            return await self._push(app, repo, request, say)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("the push to %s failed", app.name)
            await say("Push rejected: the platform failed on this push (see the server's log).")
            return 1

    async def _push(self, app: App, repo: Path, request: dict[str, Any], say: Say) -> int:
        try:
            updates = parse_ref_updates(str(request.get("updates", "")))
            git = quarantine_env(repo, request)
        except UserError as exc:
            await say(f"Push rejected: {exc.message}")
            return 1
        plan = plan_push(updates)
        if not isinstance(plan, Deploy):
            for line in plan.lines:
                await say(line)
            return 1
        if app.id in self._deploying:
            await say(
                f"Push rejected: another push to {app.name} is deploying now. Wait for it "
                "to finish, then push again."
            )
            return 1
        self._deploying.add(app.id)
        try:
            return await self._deploy(app, plan.update, git, say)
        finally:
            self._deploying.discard(app.id)

    async def _deploy(self, app: App, update: RefUpdate, git: dict[str, str], say: Say) -> int:
        if not await git_succeeds(["rev-list", "--quiet", update.new, "--not", "--all"], git):
            for line in SHALLOW_LINES:
                await say(line)
            return 1
        await say("Building source:")
        await say("")
        released: Release | None = None
        try:
            slug = await self._unpack(update, git)
            async with contextlib.aclosing(
                self._releases.deploy(app, slug, update.new[:7])
            ) as steps:
                async for item in steps:
                    if isinstance(item, str):
                        await say(item)
                    elif not isinstance(item, Heartbeat):  # git keeps the connection alive
                        released = item
        except DynosError as exc:
            for line in exc.message.splitlines():
                await say(f" !     {line}")
            await say(f" !     Push rejected to {app.name}.")
            return 1
        if released is None:
            await say(f" !     Push rejected to {app.name}: the deploy made no release.")
            return 1
        await say("-----> Launching...")
        await say(f"       Released v{released.version}")
        await say(f"       {self._web_url.format(app=app.name)} deployed to dynos")
        return 0

    async def _unpack(self, update: RefUpdate, git: dict[str, str]) -> Slug:
        """The pushed tree as a slug. The tree, not the commit, is archived: a commit's
        archive starts with a pax header (its id), which an upload may not have."""
        archive = self.scratch / f"{uuid.uuid4()}.tar.gz"
        try:
            await run_git(
                ["archive", "--format=tar.gz", "-1", "-o", str(archive), f"{update.new}^{{tree}}"],
                git,
            )
            return await self._releases.unpack(archive)
        finally:
            archive.unlink(missing_ok=True)


def quarantine_env(repo: Path, request: dict[str, Any]) -> dict[str, str]:
    """The environment in which git sees the pushed objects as the hook does: the repository,
    its quarantine directory and its own objects. UserError for directories that are not the
    repository's (only the server's own hook talks here, but it says where to look)."""
    objects = (repo / "objects").resolve()
    given = {k: str(request.get(k, "")) for k in ("objects", "alternates", "quarantine")}
    quarantine = Path(given["quarantine"]).resolve() if given["quarantine"] else None
    if quarantine is None or quarantine.parent != objects:
        raise UserError("the pushed objects are not in the repository's quarantine.")
    if Path(given["objects"]).resolve() != quarantine:
        raise UserError("the hook's object directory is not the quarantine.")
    if given["alternates"] and Path(given["alternates"]).resolve() != objects:
        raise UserError("the hook's alternate object directory is not the repository's.")
    return {
        "GIT_DIR": str(repo),
        "GIT_OBJECT_DIRECTORY": str(quarantine),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects),
        "GIT_QUARANTINE_PATH": str(quarantine),
    }
