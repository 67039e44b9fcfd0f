"""A small client for the dynos HTTP API (docs/api.md), and how the CLI finds the server.

The server is found from ``$DYNOS_API_URL`` / ``$DYNOS_API_KEY`` when set, else from the server
home (``$DYNOS_HOME`` or ``~/.local/share/dynos``): ``server.json`` names the API URL and
``credentials`` holds the token on its first line.

Every transport failure and every error answer becomes a :class:`~dynos.errors.DynosError`
here, at the boundary (:meth:`ApiClient._translated` is the one place httpx errors are
caught), so that commands never see an httpx exception; ``cli/main.py`` then turns a
DynosError into a message and an exit status.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from dynos.config import HomePaths, default_home
from dynos.errors import DynosError, UserError

DEFAULT_API_URL = "http://127.0.0.1:5050"
ACCEPT = "application/vnd.heroku+json; version=3"

# Builds run pip: a deploy may print nothing for minutes while a wheel compiles.
DEPLOY_READ_TIMEOUT = 30 * 60.0
REQUEST_TIMEOUT = 30.0


class PlainHttpTransport(httpx.HTTPTransport):
    """httpx's transport for a plain ``http://`` server, which never speaks TLS.

    httpx's default transport makes its TLS context at once, loading certifi's CA bundle:
    about 100 ms of CPU, a third of a command's run, spent for nothing against a local
    server. This one makes an unverifying context (a millisecond), so it refuses every
    request but plain HTTP: an ``https://`` URL never goes out unverified through it."""

    def __init__(self) -> None:
        super().__init__(verify=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"{request.url.scheme}:// is not plain HTTP")
        return super().handle_request(request)


def transport_for(url: httpx.URL) -> httpx.BaseTransport | None:
    """The transport for requests to ``url``: None (httpx's own, TLS verified) unless it
    is plain HTTP."""
    return PlainHttpTransport() if url.scheme == "http" else None


class ServerUnreachable(DynosError):
    """No server answers at the API URL (none configured, or the connection was refused)."""

    id = "server_unreachable"

    def __init__(self, url: str) -> None:
        super().__init__(
            f"no dynos server is running at {url}. "
            "Start one with 'dynos server' (or set DYNOS_API_URL)."
        )
        self.url = url


class ApiError(DynosError):
    """The server answered with an error: ``{"id": ..., "message": ...}`` and a 4xx/5xx."""

    def __init__(self, message: str, *, id: str, status: int) -> None:
        super().__init__(message)
        self.id = id
        self.status = status


@dataclass(frozen=True)
class ServerInfo:
    """Where the API is and how to talk to it; router fields are known only from server.json."""

    api_url: str
    token: str | None
    domain: str | None = None
    router_port: int | None = None
    router_url: str | None = None
    pid: int | None = None  # the server process, as it wrote itself into server.json
    https_port: int | None = None


def home_from_env(env: Mapping[str, str]) -> Path:
    """``$DYNOS_HOME`` from ``env``, else the default server home."""
    value = env.get("DYNOS_HOME")
    return Path(value) if value else default_home()


def read_server_json(path: Path) -> dict[str, Any] | None:
    """The parsed ``server.json``, or None when there is none.

    Raises UserError when the file exists but is not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror}.") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: restart 'dynos server' to rewrite it.") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object: restart 'dynos server' to rewrite it.")
    return data


def read_token(path: Path) -> str | None:
    """The first line of the credentials file, or None when it is missing or empty."""
    try:
        first = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    token = first[0].strip() if first else ""
    return token or None


def _last_api_url(paths: HomePaths) -> str:
    """Where the home's last server listened (its server.json, kept as it stopped), else
    where a server listens by default: what the 'no server' message names."""
    try:
        last = read_server_json(paths.last_server_json) or {}
    except UserError:
        return DEFAULT_API_URL
    url = last.get("api_url")
    return url.rstrip("/") if isinstance(url, str) and url else DEFAULT_API_URL


def locate_server(env: Mapping[str, str] | None = None, home: Path | None = None) -> ServerInfo:
    """Find the server from the environment and the home directory.

    With ``home`` given, only that home is read and ``$DYNOS_API_*`` are ignored (``dynos up``
    talks to the server it started). Raises ServerUnreachable when no API URL is known.
    """
    env = os.environ if env is None else env
    if home is not None:
        env = {}
    paths = HomePaths(home if home is not None else home_from_env(env))
    info = read_server_json(paths.server_json) or {}
    api_url = env.get("DYNOS_API_URL") or info.get("api_url")
    if not isinstance(api_url, str) or not api_url:
        raise ServerUnreachable(_last_api_url(paths))
    token = env.get("DYNOS_API_KEY") or read_token(paths.credentials)
    domain = info.get("domain")
    router_port = info.get("router_port")
    router_url = info.get("router_url")
    pid = info.get("pid")
    https_port = info.get("https_port")
    return ServerInfo(
        api_url=api_url.rstrip("/"),
        token=token,
        domain=domain if isinstance(domain, str) else None,
        router_port=router_port if isinstance(router_port, int) else None,
        router_url=router_url if isinstance(router_url, str) else None,
        pid=pid if isinstance(pid, int) else None,
        https_port=https_port if isinstance(https_port, int) else None,
    )


def error_from_response(response: httpx.Response) -> ApiError:
    """The ApiError for an error answer whose body has been read."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ApiError(
            body["message"], id=str(body.get("id", "error")), status=response.status_code
        )
    reason = response.reason_phrase or "error"
    return ApiError(
        f"the dynos server answered {response.status_code} {reason}",
        id="error",
        status=response.status_code,
    )


class ApiClient:
    """Synchronous JSON client of the dynos API. Use it as a context manager."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        # The X-Heroku-Warning headers of its answers, for the command to print (warn()).
        self.warnings: list[str] = []
        headers = {"Accept": ACCEPT, "User-Agent": "dynos-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._transport = transport
        with self._translated():  # a DYNOS_API_URL such as http://host:abc fails here
            self._http = httpx.Client(
                base_url=self.api_url,
                headers=headers,
                timeout=REQUEST_TIMEOUT,
                transport=transport or transport_for(httpx.URL(self.api_url)),
            )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request and return the decoded JSON answer (None for an empty body).

        Raises ApiError for a 4xx/5xx answer and ServerUnreachable / DynosError when the
        server cannot be reached.
        """
        return self._decode(self._send(method, path, body), path)

    def _send(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        with self._translated():
            if body is None:
                response = self._http.request(method, path, headers=headers)
            else:
                response = self._http.request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            raise error_from_response(response)
        self.warnings += response.headers.get_list("x-heroku-warning")
        return response

    @staticmethod
    def _decode(response: httpx.Response, path: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise DynosError(f"the dynos server sent an answer that is not JSON ({path})") from exc

    def get(self, path: str) -> Any:
        """GET ``path``; a list the server pages (206 with ``Next-Range``) comes whole."""
        response = self._send("GET", path)
        answer = self._decode(response, path)
        while isinstance(answer, list) and "next-range" in response.headers:
            response = self._send("GET", path, headers={"Range": response.headers["next-range"]})
            page = self._decode(response, path)
            if not isinstance(page, list) or not page:
                break
            answer += page
        return answer

    def download(self, path: str, target: Path) -> int:
        """GET ``path`` into the file ``target`` as it comes (written beside it, then moved
        into place); the bytes written."""
        partial = target.with_name(f".{target.name}.partial")
        written = 0
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(60.0)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                        written += len(chunk)
            partial.replace(target)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        except OSError as exc:
            raise UserError(f"Cannot write {target}: {exc.strerror or exc}.") from exc
        finally:
            partial.unlink(missing_ok=True)
        return written

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def stream_ndjson(
        self, path: str, content: bytes, content_type: str
    ) -> Generator[Any, None, None]:
        """POST ``content`` and yield each JSON line of the streamed answer as it arrives.

        An error status before the stream starts raises ApiError.
        """
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=DEPLOY_READ_TIMEOUT)
        headers = {"Content-Type": content_type}
        with (
            self._translated(),
            self._http.stream(
                "POST", path, content=content, headers=headers, timeout=timeout
            ) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise error_from_response(response)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise DynosError(
                        f"the dynos server sent a line that is not JSON: {line!r}"
                    ) from exc

    def stream_text(self, url: str, *, read_timeout: float | None) -> Generator[str, None, None]:
        """GET ``url`` (absolute, or relative to the API) without the token; yield its lines.

        ``read_timeout`` None waits forever between lines, as ``logs --tail`` must.
        """
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=read_timeout)
        # The URL is its own secret; the token stays off it in case it points elsewhere.
        with self._translated():
            target = httpx.URL(self.api_url).join(url)
            transport = self._transport or transport_for(target)
            headers = {"User-Agent": "dynos-cli"}
            plain = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        with self._translated(), plain, plain.stream("GET", target) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_response(response)
            yield from response.iter_lines()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Run a block of httpx calls; any httpx error leaves it as a DynosError."""
        try:
            yield
        except httpx.InvalidURL as exc:  # not an HTTPError: a URL httpx cannot even parse
            raise DynosError(
                f"a URL of the dynos server is not valid ({exc}): check DYNOS_API_URL, "
                "or restart 'dynos server' to rewrite its server.json."
            ) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.HTTPError) -> DynosError:
        if isinstance(exc, httpx.ConnectError):
            return ServerUnreachable(self.api_url)
        if isinstance(exc, httpx.TimeoutException):
            return DynosError(
                f"the dynos server at {self.api_url} did not answer in time; try again."
            )
        return DynosError(f"lost the connection to the dynos server at {self.api_url}: {exc}")
