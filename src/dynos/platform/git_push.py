"""A ``git push``, deployed: what the pre-receive hook hands the server, built and released
as ``dynos deploy`` does, its output streamed back to the pusher.

The hook (platform/git_hook.py) sends the ref updates and where git keeps the pushed
objects until it accepts them (its quarantine), then relays every line this module answers
(git shows them as ``remote:`` lines) and exits with the status answered last: 0 lets git
update the ref, anything else refuses the push and leaves every ref as it was.

What a push does is core/git_push.py's rule (:func:`~dynos.core.git_push.plan_push`).
A deploy: check the pushed history is whole (a shallow clone's is not, and git would refuse
its ref after the build), ``git archive`` the pushed tree, unpack it as an upload is
(platform/slug_archive.py: the same checks and limits, the counts checked before anything is
archived), and run ``Releases.deploy``: the build, the release, and its release phase. One
push of an app deploys at a time. Every git command runs on a deadline and is killed when the
push is cancelled (platform/git_command.py), before the push's turn is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import uuid
from asyncio.subprocess import DEVNULL
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dynos.core.git_push import SHALLOW_LINES, Deploy, RefUpdate, parse_ref_updates, plan_push
from dynos.errors import DynosError, PlatformError, UserError
from dynos.platform.build import Slug
from dynos.platform.git_command import GIT_DEADLINE, git_succeeds, run_git, running_git, too_slow
from dynos.platform.release_phase import Heartbeat
from dynos.platform.releases import Releases
from dynos.platform.slug_archive import UnpackLimits, too_many_bytes, too_many_members
from dynos.store.models import App, Release

log = logging.getLogger(__name__)

MAX_REQUEST = 1024 * 1024  # the hook's JSON line: the ref updates of one push
LS_TREE_CHUNK = 64 * 1024
SYMLINK_MODE = b"120000"  # a link's blob is its target: not counted as file bytes (nor unpacked)
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
        archive starts with a pax header (its id), which an upload may not have. It is
        counted first (:func:`check_tree`): ``git archive`` writes whatever it is given."""
        archive = self.scratch / f"{uuid.uuid4()}.tar.gz"
        await check_tree(f"{update.new}^{{tree}}", git, self._releases.unpack_limits)
        try:
            await run_git(
                ["archive", "--format=tar.gz", "-1", "-o", str(archive), f"{update.new}^{{tree}}"],
                git,
            )
            return await self._releases.unpack(archive)
        finally:
            archive.unlink(missing_ok=True)


async def check_tree(tree: str, git: dict[str, str], limits: UnpackLimits) -> None:
    """Refused (as an upload would be) when ``tree`` holds more files, directories and links,
    or more bytes of files, than an upload may. Counted from ``git ls-tree`` as it streams,
    and git is stopped at the limit: a small pack can name a tree of 10^12 files (trees 1,000
    entries wide, 4 deep, all naming one blob), which ``git archive`` would write for hours."""
    args = ["ls-tree", "-r", "-t", "-l", "-z", "--full-tree", tree]
    members = size = 0
    async with running_git(args, git, stderr=DEVNULL) as process:
        assert process.stdout is not None
        pending = bytearray()
        try:
            async with asyncio.timeout(GIT_DEADLINE):
                while chunk := await process.stdout.read(LS_TREE_CHUNK):
                    pending += chunk
                    *records, rest = pending.split(b"\0")
                    pending = bytearray(rest)
                    for record in records:
                        # "<mode> <type> <object> <size>\t<path>"; a tree's size is "-".
                        members += 1
                        if members > limits.max_members:
                            raise too_many_members(limits)
                        head, _, path = bytes(record).partition(b"\t")
                        mode, kind, _, bytes_ = head.split()
                        if kind == b"blob" and mode != SYMLINK_MODE:
                            size += int(bytes_)
                            if size > limits.max_bytes:
                                raise too_many_bytes(limits, path.decode(errors="replace"))
                status = await process.wait()
        except TimeoutError:
            raise too_slow(args, GIT_DEADLINE) from None
    if status != 0:
        raise PlatformError(f"git ls-tree failed on the pushed tree (status {status}).")


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
