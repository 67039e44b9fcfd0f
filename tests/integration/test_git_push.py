"""git push deploys, against a real server, with the real git client through the router's
Host ``git.localhost``: deploys, refusals that leave the refs alone, force and shallow
pushes, the token, the repository's end with its app, and ``dynos git:remote``."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from dynos.testing.harness import RunningServer, start_server, wait_for
from tests.integration.conftest import each_test, started


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from started(tmp_path_factory.mktemp("git") / "home", "--stop-grace", "2")


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


class Checkout:
    """A developer's repository of an app, pushing with the real git client over the
    router's HTTPS port. Nothing of the machine's git setup is read: HOME is the test's, and
    no GIT_* variable is passed but ``GIT_SSL_CAINFO`` (the platform CA), unless
    ``trust_ca`` is false (git must then learn it from its config)."""

    def __init__(self, path: Path, server: RunningServer, trust_ca: bool = True) -> None:
        self.path = path
        self.server = server
        path.mkdir(parents=True, exist_ok=True)
        home = path.parent / f"{path.name}-home"
        home.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DYNOS_"))}
        self.env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            GIT_TERMINAL_PROMPT="0",
            GIT_AUTHOR_NAME="Dev",
            GIT_AUTHOR_EMAIL="dev@example.com",
            GIT_COMMITTER_NAME="Dev",
            GIT_COMMITTER_EMAIL="dev@example.com",
        )
        if trust_ca:
            self.env["GIT_SSL_CAINFO"] = str(server.ca)

    def git(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        if not (self.path / ".git").exists():
            self.git("init", "-q", "-b", "main")
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(textwrap.dedent(text))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref).stdout.strip()

    def push(self, app: str, *refspecs: str, token: str | None = None, check: bool = False):
        return self.git("push", remote_url(self.server, app, token), *refspecs, check=check)

    def remote_refs(self, app: str) -> dict[str, str]:
        listed = self.git("ls-remote", remote_url(self.server, app)).stdout
        return {ref: sha for sha, ref in (line.split("\t") for line in listed.splitlines())}


def remote_url(server: RunningServer, app: str, token: str | None = None) -> str:
    """The app's git URL, with a user name and the token in it (as a .netrc gives them)."""
    with server.api() as api:
        url = api.get(f"/apps/{app}").json()["git_url"]
    assert url == f"https://git.localhost:{server.https_port}/{app}.git", url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://anyone:{token or server.token}@{rest}"


class SniClient:
    """GETs through ``client`` naming ``host`` in the TLS handshake."""

    def __init__(self, client: httpx.Client, host: str) -> None:
        self.client = client
        self.host = host

    def get(self, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
        return self.client.get(path, auth=auth, extensions={"sni_hostname": self.host})


def served(server: RunningServer, app: str) -> str:
    with server.router(app) as client:
        response = client.get("/")
        return response.text if response.status_code == 200 else f"<{response.status_code}>"


NOBODY = 65534
WEB = {"Procfile": "web: python3 -m http.server $PORT\n"}


def new_app(server: RunningServer, name: str) -> str:
    server.create_app(name)
    return name


def test_a_push_to_main_deploys_and_the_app_serves_the_new_code(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitdeploy")
    work = Checkout(tmp_path / "work", server)
    first = work.commit({**WEB, "index.html": "version one\n"})
    result = work.push(app, "main")
    assert result.returncode == 0, result.stderr
    # git shows the hook's output as remote: lines, the build's and the release's.
    assert "remote: -----> Discovering process types: web" in result.stderr
    assert "remote:        Released v2" in result.stderr
    assert "* [new branch]      main -> main" in result.stderr
    assert work.remote_refs(app)["refs/heads/main"] == first
    with server.api() as api:
        release = api.get(f"/apps/{app}/releases/2").json()
    assert release["description"] == f"Deploy {first[:7]}"  # the pushed commit, as on Heroku
    server.scale(app, web=1)
    wait_for(lambda: "version one" in served(server, app), what="the first version served")

    second = work.commit({"index.html": "version two\n"})
    result = work.push(app, "main")
    assert result.returncode == 0, result.stderr
    assert "Released v3" in result.stderr
    wait_for(lambda: "version two" in served(server, app), what="the pushed version served")
    assert work.remote_refs(app)["refs/heads/main"] == second


def test_a_failing_build_rejects_the_push_and_leaves_the_ref(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitbuildfail")
    work = Checkout(tmp_path / "work", server)
    good = work.commit({**WEB, "index.html": "good\n"})
    assert work.push(app, "main").returncode == 0
    failing = {
        "requirements.txt": "./pkg\n",
        "pkg/setup.py": "import sys\nprint('THE BUILD BREAKS HERE')\nsys.exit(1)\n",
    }
    work.commit(failing, "break the build")
    result = work.push(app, "main")
    assert result.returncode != 0
    assert "THE BUILD BREAKS HERE" in result.stderr  # the build's output reached the pusher
    assert "remote:  !     Push rejected to gitbuildfail." in result.stderr
    assert "! [remote rejected] main -> main (pre-receive hook declined)" in result.stderr
    assert work.remote_refs(app)["refs/heads/main"] == good
    with server.api() as api:
        assert [r["version"] for r in api.get(f"/apps/{app}/releases").json()] == [1, 2]


def test_a_failing_release_phase_rejects_the_push_and_leaves_the_ref(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitphasefail")
    work = Checkout(tmp_path / "work", server)
    good = work.commit({**WEB, "index.html": "good\n"})
    assert work.push(app, "main").returncode == 0
    work.commit({"Procfile": WEB["Procfile"] + "release: echo MIGRATING; exit 3\n"})
    result = work.push(app, "main")
    assert result.returncode != 0
    assert "remote:        MIGRATING" in result.stderr  # the release command's output
    assert "(pre-receive hook declined)" in result.stderr
    assert work.remote_refs(app)["refs/heads/main"] == good


def test_another_branch_is_refused_and_pushed_to_main_it_deploys(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitbranch")
    work = Checkout(tmp_path / "work", server)
    work.commit({**WEB, "index.html": "topic\n"})
    work.git("checkout", "-q", "-b", "topic")
    result = work.push(app, "topic")
    assert result.returncode != 0
    assert "Pushed to branch other than [main, master], skipping build." in result.stderr
    assert "git push dynos BRANCH:main" in result.stderr
    assert work.remote_refs(app) == {}
    result = work.push(app, "topic:main")
    assert result.returncode == 0, result.stderr
    assert "Released v2" in result.stderr
    assert work.remote_refs(app)["refs/heads/main"] == work.head("topic")
    # master deploys too.
    work.commit({"index.html": "on master\n"})
    result = work.push(app, "topic:master")
    assert result.returncode == 0 and "Released v3" in result.stderr, result.stderr


def test_a_force_push_deploys_a_rewritten_history(server: RunningServer, tmp_path: Path) -> None:
    app = new_app(server, "gitforce")
    work = Checkout(tmp_path / "work", server)
    work.commit({**WEB, "index.html": "one\n"})
    work.commit({"index.html": "two\n"})
    assert work.push(app, "main").returncode == 0
    work.git("reset", "-q", "--hard", "HEAD~1")
    rewritten = work.commit({"index.html": "rewritten\n"}, "rewrite")
    refused = work.push(app, "main")
    assert refused.returncode != 0 and "[rejected]" in refused.stderr  # git's own rule
    result = work.push(app, "--force", "main")
    assert result.returncode == 0, result.stderr
    assert "forced update" in result.stderr and "Released v3" in result.stderr
    assert work.remote_refs(app)["refs/heads/main"] == rewritten


def test_a_push_from_a_shallow_clone_gets_a_clear_error(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitshallow")
    origin = Checkout(tmp_path / "origin", server)
    origin.commit({**WEB, "index.html": "one\n"})
    origin.commit({"index.html": "two\n"})
    clone = Checkout(tmp_path / "shallow", server)
    origin.git("clone", "-q", "--depth", "1", f"file://{origin.path}", str(clone.path))
    clone.commit({"index.html": "three\n"})
    result = clone.push(app, "main")
    assert result.returncode != 0
    assert "shallow update not allowed" in result.stderr
    assert "git fetch --unshallow" in result.stderr
    assert "Released" not in result.stderr
    assert clone.remote_refs(app) == {}
    with server.api() as api:
        assert len(api.get(f"/apps/{app}/releases").json()) == 1  # nothing was deployed


def test_a_missing_or_wrong_token_is_asked_for_and_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitauth")
    path = f"/{app}.git/info/refs?service=git-receive-pack"
    trusted = ssl.create_default_context(cafile=str(server.ca))
    # git (curl) resolves *.localhost itself; Python's resolver may not: the address, and
    # the name for SNI and the certificate's check.
    base = f"https://127.0.0.1:{server.https_port}"
    with httpx.Client(
        base_url=base, verify=trusted, headers={"Host": f"git.localhost:{server.https_port}"}
    ) as plain_client:
        client = SniClient(plain_client, "git.localhost")
        for auth in (None, ("anyone", "wrong-token")):
            response = client.get(path, auth=auth)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Basic ")
            assert "API token" in response.text
        answer = client.get(path, auth=("anyone", server.token))
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-git-receive-pack-advertisement"
        # Only the smart protocol of an existing app's repository.
        assert client.get(f"/{app}.git/HEAD", auth=("x", server.token)).status_code == 404
        missing = client.get(
            "/nosuch.git/info/refs?service=git-upload-pack", auth=("x", server.token)
        )
        assert missing.status_code == 404 and "nosuch" in missing.text
    # The router's plain HTTP port: refused before git could send the token in the clear.
    plain = f"http://127.0.0.1:{server.router_port}"
    with httpx.Client(base_url=plain, headers={"Host": "git.localhost"}) as client:
        for auth in (None, ("anyone", server.token)):
            refused = client.get(path, auth=auth)
            assert refused.status_code == 403 and "www-authenticate" not in refused.headers
            assert f"https://git.localhost:{server.https_port}/APP.git" in refused.text
        # A client cannot say it came over HTTPS: the router sets the header itself.
        forged = client.get(path, headers={"X-Forwarded-Proto": "https"}, auth=("a", server.token))
        assert forged.status_code == 403
    work = Checkout(tmp_path / "work", server)
    work.commit({**WEB, "index.html": "x\n"})
    result = work.push(app, "main", token="wrong-token")
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    assert work.remote_refs(app) == {}


def test_the_repository_is_the_servers_only_and_goes_with_its_app(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitdestroy")
    work = Checkout(tmp_path / "work", server)
    work.commit({**WEB, "index.html": "x\n"})
    assert work.push(app, "main").returncode == 0
    with server.api() as api:
        app_id = api.get(f"/apps/{app}").json()["id"]
    repo = server.home / "git" / "repos" / f"{app_id}.git"
    assert (repo / "refs" / "heads" / "main").exists()
    for closed in (server.home / "git", server.home / "git" / "repos"):
        assert closed.stat().st_mode & 0o077 == 0  # dyno users cannot enter, list or read
        assert closed.stat().st_uid == os.geteuid()
    if os.geteuid() == 0:  # as another user (a dyno's), the repository cannot be read
        for command in (["ls", str(repo)], ["cat", str(repo / "HEAD")]):
            tried = subprocess.run(command, user=NOBODY, group=NOBODY, capture_output=True)
            assert tried.returncode != 0 and b"ermission denied" in tried.stderr, tried
    with server.api() as api:
        api.delete(f"/apps/{app}").raise_for_status()
    assert not repo.exists()
    # A new app of the same name starts with an empty repository.
    new_app(server, app)
    assert work.remote_refs(app) == {}


def test_git_is_not_an_app_name(server: RunningServer) -> None:
    with server.api() as api:
        response = api.post("/apps", json={"name": "git"})
    assert response.status_code == 422 and "reserved" in response.json()["message"]


def test_dynos_git_remote_makes_a_remote_that_pushes_with_the_token_from_the_home(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitremote")
    work = Checkout(tmp_path / "work", server, trust_ca=False)
    work.commit({**WEB, "index.html": "through the remote\n"})
    env = {**work.env, "DYNOS_HOME": str(server.home)}
    remote = subprocess.run(
        [sys.executable, "-m", "dynos", "git:remote", "-a", app],
        cwd=work.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert remote.returncode == 0, remote.stderr
    url = work.git("remote", "get-url", "dynos").stdout.strip()
    host = f"https://git.localhost:{server.https_port}"
    assert url == f"{host}/{app}.git"
    assert work.git("config", f"http.{host}/.sslCAInfo").stdout.strip() == str(server.ca)
    assert f"set git remote dynos to {url}" in remote.stdout
    # No token in the URL or the config: the helper reads it from the server home.
    assert server.token not in (work.path / ".git" / "config").read_text()
    result = work.git("push", "dynos", "main", check=False)
    assert result.returncode == 0, result.stderr
    assert "Released v2" in result.stderr
    # Run again, it points the same remote (no second one, no second helper); a
    # GIT_SSL_CAINFO in the environment, which would win over the remote's CA, is named.
    again = subprocess.run(
        [sys.executable, "-m", "dynos", "git:remote", "-a", app],
        cwd=work.path,
        env={**env, "GIT_SSL_CAINFO": "/etc/ssl/certs/ca-certificates.crt"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert "Warning: GIT_SSL_CAINFO set in this environment override" in again.stderr
    assert "Warning" not in remote.stderr
    helpers = work.git("config", "--get-all", f"credential.{host}.helper")
    assert helpers.stdout.splitlines()[0] == "" and len(helpers.stdout.splitlines()) == 2


def test_a_push_of_malformed_objects_is_refused_and_moves_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    app = new_app(server, "gitfsck")
    work = Checkout(tmp_path / "work", server)
    work.commit(WEB)
    blob = work.git("hash-object", "-w", "--stdin", check=False)  # reads nothing: an empty blob
    tree = subprocess.run(
        ["git", "mktree"],
        cwd=work.path,
        env=work.env,
        input=f"100644 blob {blob.stdout.strip()}\t.git\n",  # what a checkout must never write
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    bad = work.git("commit-tree", tree, "-p", "HEAD", "-m", "a tree with .git").stdout.strip()
    result = work.push(app, f"{bad}:refs/heads/main")
    assert result.returncode != 0
    assert "hasDotgit" in result.stderr or "unpacker error" in result.stderr, result.stderr
    assert work.remote_refs(app) == {}
    with server.api() as api:
        assert [r["version"] for r in api.get(f"/apps/{app}/releases").json()] == [1]


def test_a_pushed_tree_of_a_trillion_files_is_refused_quickly_and_moves_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    """A pack of a few kB: trees 1,000 entries wide, 4 deep, all naming one blob (10^12
    files; git's fsck finds nothing wrong). git archive would write it for hours, as root;
    the tree is counted first and refused at --max-unpacked-files, with git stopped."""
    app = new_app(server, "gitbomb")
    work = Checkout(tmp_path / "work", server)
    work.commit(WEB)

    def git_in(*args: str, data: str) -> str:
        return work.git(*args, input=data).stdout.strip()

    blob = git_in("hash-object", "-w", "--stdin", data="x\n")
    tree = git_in("mktree", data="".join(f"100644 blob {blob}\tf{n:03}\n" for n in range(1000)))
    for _ in range(3):
        tree = git_in("mktree", data="".join(f"040000 tree {tree}\td{n:03}\n" for n in range(1000)))
    procfile = git_in("hash-object", "-w", "--stdin", data=WEB["Procfile"])
    top = git_in("mktree", data=f"100644 blob {procfile}\tProcfile\n040000 tree {tree}\tapp\n")
    bomb = work.git("commit-tree", top, "-p", "HEAD", "-m", "10^12 files").stdout.strip()
    started = time.monotonic()
    result = work.push(app, f"{bomb}:refs/heads/main")
    assert time.monotonic() - started < 60, result.stderr
    assert result.returncode != 0
    assert "remote:  !     The upload holds more than 100000 files and directories" in result.stderr
    assert "Push rejected to gitbomb" in result.stderr
    assert work.remote_refs(app) == {}
    with server.api() as api:
        assert [r["version"] for r in api.get(f"/apps/{app}/releases").json()] == [1]
    left = [
        child.cmdline()
        for child in psutil.Process(server.process.pid).children(recursive=True)
        if child.name() == "git" and {"ls-tree", "archive"} & set(child.cmdline())
    ]
    assert left == []


def test_git_remote_outside_a_repository_says_so(server: RunningServer, tmp_path: Path) -> None:
    app = new_app(server, "gitnorepo")
    outside = tmp_path / "plain"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(
        [sys.executable, "-m", "dynos", "git:remote", "-a", app],
        cwd=outside,
        env={**env, "DYNOS_HOME": str(server.home), "GIT_CEILING_DIRECTORIES": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("dynos: git rev-parse failed: fatal: not a git repository")
    assert "Traceback" not in result.stderr
    shutil.rmtree(outside)


def test_a_large_push_streams_through_the_router(server: RunningServer, tmp_path: Path) -> None:
    """Past git's http.postBuffer (1 MB) the pack goes up chunked, in one request."""
    app = new_app(server, "gitlarge")
    work = Checkout(tmp_path / "work", server)
    work.commit({**WEB, "index.html": "large\n"})
    (work.path / "blob.bin").write_bytes(os.urandom(6 * 1024 * 1024))  # incompressible
    pushed = work.commit({}, "a large file")
    result = work.push(app, "main")
    assert result.returncode == 0, result.stderr
    assert "Released v2" in result.stderr
    assert work.remote_refs(app)["refs/heads/main"] == pushed
    # And a clone gets it back whole.
    clone = tmp_path / "clone"
    work.git("clone", "-q", remote_url(server, app), str(clone))
    assert (clone / "blob.bin").read_bytes() == (work.path / "blob.bin").read_bytes()


def test_a_second_push_while_one_deploys_is_refused(server: RunningServer, tmp_path: Path) -> None:
    app = new_app(server, "gitqueue")
    first = Checkout(tmp_path / "first", server)
    first.commit({"Procfile": WEB["Procfile"] + "release: echo PHASE; sleep 4\n"})
    with subprocess.Popen(
        ["git", "push", remote_url(server, app), "main"],
        cwd=first.path,
        env=first.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as pushing:
        assert pushing.stdout is not None
        for line in pushing.stdout:  # the first push is in its release phase
            if "PHASE" in line:
                break
        second = Checkout(tmp_path / "second", server)
        second.commit({**WEB, "index.html": "second\n"})
        result = second.push(app, "main")
        assert result.returncode != 0
        assert "another push to gitqueue is deploying now" in result.stderr
        rest = pushing.stdout.read()
        assert pushing.wait(timeout=120) == 0, rest
    assert second.remote_refs(app)["refs/heads/main"] == first.head()


def test_every_router_process_routes_the_git_host(tmp_path: Path) -> None:
    """With more router processes, whichever takes the connection knows git.<domain>."""
    server = start_server(tmp_path / "home", "--stop-grace", "2", "--router-processes", "2")
    try:
        app = new_app(server, "gitprocs")
        work = Checkout(tmp_path / "work", server)
        work.commit({**WEB, "index.html": "x\n"})
        for _ in range(4):  # connections spread over both processes
            assert work.remote_refs(app) == {}
        result = work.push(app, "main")
        assert result.returncode == 0 and "Released v2" in result.stderr, result.stderr
    finally:
        server.stop()
