"""Each app's git repository, and the ``git http-backend`` that serves it.

One bare repository per app, by app id (a rename keeps it), under ``<home>/git/repos``:
made at the app's first git request, removed with the app. The directory is the server's
only (0700): dyno users, who run as other users, cannot list or read a repository.

Git's smart HTTP protocol is Debian's ``git http-backend`` (a CGI program), started once
per request by :meth:`GitRepos.start_backend` with the CGI variables of the request; the
API's git service (api/git_http.py) streams the request body into it and its answer back.
Every repository takes the platform's pre-receive hook (``core.hooksPath``, given to git
in the environment, so no repository holds a hook of its own): for a push, the server
keeps one end of a socket pair and the hook gets the other (platform/git_hook.py), and
:class:`~dynos.platform.git_push.GitPushes` deploys what it hands over.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from dynos.core.git_push import GitPath
from dynos.errors import PlatformError
from dynos.platform.git_command import git_env, run_git
from dynos.platform.git_push import GitPushes
from dynos.store.models import App

HOOK_SOURCE = Path(__file__).with_name("git_hook.py")
MAX_PUSH = 500 * 1024 * 1024  # bytes of pack a push may send: Heroku's slug size limit


class GitBackend:
    """One running ``git http-backend``, and the push it may carry. ``close`` ends both."""

    def __init__(self, process: asyncio.subprocess.Process, push: asyncio.Task[None] | None):
        self.process = process
        self._push = push

    async def close(self) -> None:
        """Kill the backend if it still runs, and wait for it and for its push's deploy.

        The deploy ends when the hook's end of the channel closes (it died with the
        push), or is cancelled here if the request went away first."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()
        if self._push is not None:
            if not self._push.done():
                self._push.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push


class GitRepos:
    def __init__(self, root: Path, pushes: GitPushes) -> None:
        self.root = root
        self.repos = root / "repos"
        self.hooks = root / "hooks"
        self.pushes = pushes

    @classmethod
    def prepared(cls, root: Path, pushes: GitPushes) -> GitRepos:
        """The repositories under ``root``, made ready (:meth:`prepare`)."""
        repos = cls(root, pushes)
        repos.prepare()
        return repos

    def prepare(self) -> None:
        """The directories, closed to everyone else, and the hook as this server's python
        runs it (written at every start: the python or the dynos install may have moved)."""
        for directory in (self.root, self.repos, self.hooks, self.pushes.scratch):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        hook = self.hooks / "pre-receive"
        temporary = hook.with_suffix(".new")
        temporary.write_text(f"#!{sys.executable} -IS\n" + HOOK_SOURCE.read_text())
        temporary.chmod(0o700)
        temporary.replace(hook)

    def path(self, app: App) -> Path:
        return self.repos / f"{app.id}.git"

    def remove(self, app: App) -> None:
        """The app's repository, gone (with the app)."""
        shutil.rmtree(self.path(app), ignore_errors=True)

    async def ensure(self, app: App) -> Path:
        """The app's repository, made empty (``main`` as HEAD) if it has none yet."""
        path = self.path(app)
        if not (path / "HEAD").exists():
            temporary = self.repos / f".{app.id}.new"
            shutil.rmtree(temporary, ignore_errors=True)
            await run_git(["init", "--quiet", "--bare", "--initial-branch=main", str(temporary)])
            try:
                temporary.rename(path)
            except OSError:  # another request made it first
                shutil.rmtree(temporary, ignore_errors=True)
        return path

    async def start_backend(self, app: App, request: GitPath, cgi: Mapping[str, str]) -> GitBackend:
        """``git http-backend`` for one request to ``app``'s repository; ``cgi`` holds the
        request's CGI variables (REQUEST_METHOD, QUERY_STRING, CONTENT_TYPE, ...)."""
        repo = await self.ensure(app)
        env = git_env(
            {
                **cgi,
                "GIT_PROJECT_ROOT": str(self.repos),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": f"/{app.id}.git{request.endpoint}",
                "REMOTE_USER": "dynos",
                "REMOTE_ADDR": "127.0.0.1",
            },
            ("core.hooksPath", str(self.hooks)),
            ("http.receivepack", "true"),
            ("http.uploadpack", "true"),
            # Malformed objects (a tree naming ".git" or "..", a bad author line) are refused
            # before any ref moves: what a checkout of them would do is not for us to find out.
            ("receive.fsckObjects", "true"),
            # A push is as large as a deploy's upload may be (api/deploys.py's limit).
            ("receive.maxInputSize", str(MAX_PUSH)),
        )
        push: asyncio.Task[None] | None = None
        ours: socket.socket | None = None
        theirs: socket.socket | None = None
        pass_fds: tuple[int, ...] = ()
        if request.pushes and request.endpoint == "/git-receive-pack":
            ours, theirs = socket.socketpair()
            env["DYNOS_GIT_PUSH_FD"] = str(theirs.fileno())
            pass_fds = (theirs.fileno(),)
        try:
            process = await asyncio.create_subprocess_exec(
                "git",
                "http-backend",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.repos,
                pass_fds=pass_fds,
            )
        except OSError as exc:
            if ours is not None:
                ours.close()
            raise PlatformError(f"Cannot run git http-backend: {exc.strerror}.") from exc
        finally:
            if theirs is not None:
                theirs.close()  # the backend's processes hold it now
        if ours is not None:
            push = asyncio.create_task(self.pushes.serve(app, repo, ours))
        return GitBackend(process, push)
