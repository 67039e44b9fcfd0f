"""When a request may be sent again, and where: the router's retry rules, without I/O.

- A connect that is refused or times out (H21, H19) reached no app: the dyno is quarantined
  and the next one is tried, whatever the request. Each dyno is tried once.
- A dyno that closed the connection before any byte of the response (H13) may not have seen
  the request, or may have acted on it. The request goes again only when that is safe
  (nginx's rule): an idempotent method whose body the router still holds whole
  (``RETRY_BODY_LIMIT``). Never once a response has started, never after a malformed
  response (H17), never a POST.
- Such a close on a *reused* pooled connection is most often the dyno closing it idle just
  as it was taken (the keep-alive race): once per request, the request goes again on a new
  connection, to any dyno (the same one may take it). Otherwise it goes to another dyno.

``Attempts`` keeps what one request tried; ``ReplayBody`` what it would send again.
"""

from __future__ import annotations

import enum
from typing import Final, Generic, TypeVar

from dynos.router.http import IDEMPOTENT_METHODS

RETRY_BODY_LIMIT: Final = 64 * 1024  # request body kept for a retry; a larger one is not retried

Slot = TypeVar("Slot")


class Retry(enum.Enum):
    NO = "no"  # answer the failure
    NEW_CONNECTION = "new-connection"  # again, on a new connection, to any dyno
    NEXT_DYNO = "next-dyno"  # again, to a dyno not tried yet


def retry_after_close(
    *, malformed: bool, received: bool, replayable: bool, reused: bool, new_connection_tried: bool
) -> Retry:
    """Whether to send a request again after its dyno connection failed before the response
    head reached the client.

    ``malformed``: the dyno sent something that is not an HTTP response (else it closed the
    connection); ``received``: some bytes of a response came; ``replayable``: an idempotent
    request whose body the router holds whole; ``reused``: the connection carried a request
    before; ``new_connection_tried``: this request already had its one retry on a new
    connection.
    """
    if malformed or received or not replayable:
        return Retry.NO
    if reused and not new_connection_tried:
        return Retry.NEW_CONNECTION
    return Retry.NEXT_DYNO


class Attempts(Generic[Slot]):
    """The dynos one request tried, and how its next attempt connects."""

    __slots__ = ("new_connection", "new_connection_tried", "tried")

    def __init__(self) -> None:
        self.tried: list[Slot] = []  # each is not tried again
        self.new_connection = False  # the next attempt opens a connection (no pooled one)
        self.new_connection_tried = False

    def connect_failed(self, slot: Slot) -> None:
        """``slot``'s dyno refused the connection or did not accept it in time."""
        self.tried.append(slot)

    def closed(self, slot: Slot | None, retry: Retry) -> None:
        """The connection to ``slot``'s dyno failed and ``retry`` (not ``NO``) is the plan."""
        if retry is Retry.NEW_CONNECTION:
            self.new_connection = self.new_connection_tried = True
        elif retry is Retry.NEXT_DYNO:
            if slot is not None:
                self.tried.append(slot)
            self.new_connection = False


class ReplayBody:
    """The request body so far, kept to send again; ``None`` once it outgrows the limit."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] | None = []
        self.size = 0

    @staticmethod
    def for_method(method: bytes) -> ReplayBody | None:
        """A body to keep for a request that may be retried, or None (never retried)."""
        return ReplayBody() if method in IDEMPOTENT_METHODS else None

    def add(self, data: bytes) -> None:
        pieces = self.pieces
        if pieces is not None:
            self.size += len(data)
            if self.size > RETRY_BODY_LIMIT:
                self.pieces = None
            else:
                pieces.append(data)

    @property
    def whole(self) -> bool:
        """Whether every byte of the body so far is kept."""
        return self.pieces is not None
