"""git push deploys, the pure rules: which git URLs the platform serves, what a push may
change, and how a CGI program's answer begins.

The git service (api/git_http.py) hands git's smart HTTP protocol to ``git http-backend``;
these rules decide what reaches it (:func:`parse_git_path`: an app's repository and one of
the three smart-protocol endpoints, nothing else) and read what it answers
(:func:`parse_cgi_head`). A push runs the platform's pre-receive hook, which hands the
pushed refs to the server; :func:`plan_push` says whether they deploy (one update of
``main`` or ``master``) or are refused, and with which of Heroku's messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dynos.errors import BadRequest, NotFound

# Heroku deploys pushes to these branches only.
DEPLOY_BRANCHES = ("main", "master")
ZERO_ID = "0" * 40
OBJECT_ID = re.compile(r"[0-9a-f]{40}")
# /APP.git/info/refs, /APP.git/git-upload-pack, /APP.git/git-receive-pack; an app name as
# platform.APP_NAME has it (the name decides nothing else: the repository is by app id).
_GIT_PATH = re.compile(
    r"/([a-z][a-z0-9-]{1,28}[a-z0-9])\.git(/info/refs|/git-upload-pack|/git-receive-pack)"
)
SERVICES = ("git-upload-pack", "git-receive-pack")
MAX_CGI_HEAD = 16 * 1024


@dataclass(frozen=True)
class GitPath:
    """One request of git's smart HTTP protocol: the app, its endpoint, and the service
    (``git-upload-pack`` to fetch, ``git-receive-pack`` to push)."""

    app: str
    endpoint: str  # "/info/refs", "/git-upload-pack" or "/git-receive-pack"
    service: str

    @property
    def pushes(self) -> bool:
        return self.service == "git-receive-pack"


def parse_git_path(path: str, query: str, method: str) -> GitPath:
    """The smart-protocol request ``method path?query`` names; NotFound for any other path
    (git's dumb protocol included: the platform does not serve a repository's files),
    BadRequest for a method or service that endpoint does not take."""
    match = _GIT_PATH.fullmatch(path)
    if match is None:
        raise NotFound(
            f"No git repository at {path!r}: push to https://git.<domain>/APP.git "
            "(dynos git:remote -a APP sets it up)."
        )
    app, endpoint = match.group(1), match.group(2)
    if endpoint == "/info/refs":
        service = _query_service(query)
        if method not in ("GET", "HEAD"):
            raise BadRequest(f"{endpoint} takes GET, not {method}.")
    else:
        service = endpoint[1:]
        if method != "POST":
            raise BadRequest(f"{endpoint} takes POST, not {method}.")
    return GitPath(app, endpoint, service)


def _query_service(query: str) -> str:
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "service" and value in SERVICES:
            return value
    raise NotFound("This git server speaks git's smart HTTP protocol only: use git 1.6.6 or newer.")


@dataclass(frozen=True)
class RefUpdate:
    """One line a pre-receive hook reads: ``<old> <new> <ref>``."""

    old: str
    new: str
    ref: str

    @property
    def deletes(self) -> bool:
        return self.new == ZERO_ID

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


def parse_ref_updates(text: str) -> list[RefUpdate]:
    """The hook's input; BadRequest for a line that is not ``<old> <new> <ref>``."""
    updates = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 3 or not all(OBJECT_ID.fullmatch(p) for p in parts[:2]) or not parts[2]:
            raise BadRequest(f"Not a pre-receive line: {line[:200]!r}.")
        updates.append(RefUpdate(*parts))
    return updates


@dataclass(frozen=True)
class Deploy:
    """The push builds and releases ``update.new``, pushed to ``update.branch``."""

    update: RefUpdate


@dataclass(frozen=True)
class Refuse:
    """The push is refused, the refs unchanged; ``lines`` say why and what to do."""

    lines: tuple[str, ...]


PushPlan = Deploy | Refuse


def plan_push(updates: list[RefUpdate]) -> PushPlan:
    """What a push of ``updates`` does: deploy one update of main or master, or refuse
    everything (git then updates no ref: the hook's exit status covers them all)."""
    if not updates:
        return Refuse(("Push rejected: it updates no branch.",))
    deploys = [u for u in updates if u.branch in DEPLOY_BRANCHES]
    others = [u for u in updates if u.branch not in DEPLOY_BRANCHES]
    if others:
        names = ", ".join(u.ref for u in others)
        return Refuse(
            (
                f"Pushed to branch other than [{', '.join(DEPLOY_BRANCHES)}], skipping build.",
                f"Push rejected: dynos deploys only pushes to main or master, not {names}.",
                "Push your branch to main to deploy it: git push dynos BRANCH:main",
            )
        )
    if len(deploys) > 1:
        return Refuse(
            ("Push rejected: push either main or master, not both: each push deploys one.",)
        )
    update = deploys[0]
    if update.deletes:
        return Refuse(
            (
                f"Push rejected, cannot delete {update.branch} branch.",
                "To stop the app, scale its dynos to 0 (dynos ps:scale web=0), or destroy it.",
            )
        )
    return Deploy(update)


SHALLOW_LINES = (
    "Push rejected: this push comes from a shallow clone (shallow update not allowed).",
    "The platform keeps each app's whole history: run 'git fetch --unshallow' "
    "(or clone without --depth) and push again.",
)


def parse_cgi_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers a CGI program wrote before its body (RFC 3875 section 6):
    ``Status: 404 Not Found`` sets the status (200 without it); other lines are headers.
    ValueError for a head that is not one."""
    status = 200
    headers = []
    for raw in head.split(b"\n"):
        line = raw.rstrip(b"\r").decode("latin-1")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"not a CGI header line: {line[:100]!r}")
        value = value.strip()
        if name.lower() == "status":
            code = value.split(" ", 1)[0]
            if not (code.isdigit() and len(code) == 3):
                raise ValueError(f"not a CGI status: {value[:100]!r}")
            status = int(code)
        else:
            headers.append((name, value))
    return status, headers


def split_cgi_head(buffer: bytes) -> tuple[bytes, bytes] | None:
    """``buffer`` cut after the blank line that ends a CGI head: (head, body so far), or
    None while the blank line has not come (ValueError past MAX_CGI_HEAD)."""
    found = [(at, sep) for sep in (b"\r\n\r\n", b"\n\n") if (at := buffer.find(sep)) >= 0]
    if found:
        at, separator = min(found)
        return buffer[:at], buffer[at + len(separator) :]
    if len(buffer) > MAX_CGI_HEAD:
        raise ValueError("the CGI head is too long")
    return None
