"""The states of one exchange (a request and its response), and the moves allowed between them.

As h11 does for a connection, each side has a state of its own and a table of where it may
go next; a move the table does not list is a bug in the router and raises
``IllegalTransition`` (which the router answers H99, or a cut connection, like any bug of its
own). Nothing here does I/O: ``tests/router/test_exchange_state.py`` walks the tables.

The request side, as the client connection reads it: ``RECEIVING`` -> ``RECEIVED``.

The response side, as the exchange works on it (docs/architecture.md draws it):

- ``ROUTING`` -> ``WAKING`` (an idle app), ``CONNECTING`` or ``SENT`` (a pooled connection),
  or ``DONE`` (a page from the router: 404, H10, H14);
- ``WAKING`` -> ``CONNECTING``, ``SENT``, or ``DONE`` (H20);
- ``CONNECTING`` -> ``CONNECTING`` (refused or timed out: the next dyno), ``SENT``, ``DONE``;
- ``SENT`` -> ``RESPONDING`` (the response head), ``TUNNEL`` (101), ``DONE`` (H12, H13, H17),
  or again ``CONNECTING`` or ``SENT`` (a retry, retry.py);
- ``RESPONDING`` and ``TUNNEL`` -> ``DONE`` (the whole response, a cut one, the tunnel closed);
- every state but ``ABANDONED`` -> ``ABANDONED`` (the client left, or its request broke).
"""

from __future__ import annotations

import enum
from typing import Final

from mypy_extensions import mypyc_attr


@mypyc_attr(native_class=False)  # compiled, a subclass of RuntimeError cannot be native
class IllegalTransition(RuntimeError):
    """The router's own bug: an exchange asked to move where its state table does not go."""


class RequestState(enum.Enum):
    RECEIVING = "receiving"  # the head is read; the body (if any) is still coming
    RECEIVED = "received"  # read to its end

    # Members are singletons compared with ``is``: identity hashing is C, where Enum's hash
    # of the name is a Python call (a third of a microsecond per move, on the hot path).
    __hash__ = object.__hash__


class ResponseState(enum.Enum):
    ROUTING = "routing"  # read, not yet given a dyno (queued behind a pipelined request, too)
    WAKING = "waking"  # waiting for an idle app's dyno to come up (H20 if it does not)
    CONNECTING = "connecting"  # opening a connection to a dyno
    SENT = "sent"  # the request went to a dyno; no response head yet (H12 if none in time)
    RESPONDING = "responding"  # the response head went to the client; the body follows
    TUNNEL = "tunnel"  # the dyno switched protocols (101): bytes pass both ways
    DONE = "done"  # nothing more goes to the client
    ABANDONED = "abandoned"  # the client is gone: the dyno side is let go

    __hash__ = object.__hash__  # (as RequestState's)


REQUEST_TRANSITIONS: Final[dict[RequestState, frozenset[RequestState]]] = {
    RequestState.RECEIVING: frozenset({RequestState.RECEIVED}),
    RequestState.RECEIVED: frozenset(),
}

_R = ResponseState
RESPONSE_TRANSITIONS: Final[dict[ResponseState, frozenset[ResponseState]]] = {
    _R.ROUTING: frozenset({_R.WAKING, _R.CONNECTING, _R.SENT, _R.DONE, _R.ABANDONED}),
    _R.WAKING: frozenset({_R.CONNECTING, _R.SENT, _R.DONE, _R.ABANDONED}),
    _R.CONNECTING: frozenset({_R.CONNECTING, _R.SENT, _R.DONE, _R.ABANDONED}),
    _R.SENT: frozenset({_R.CONNECTING, _R.SENT, _R.RESPONDING, _R.TUNNEL, _R.DONE, _R.ABANDONED}),
    _R.RESPONDING: frozenset({_R.DONE, _R.ABANDONED}),
    _R.TUNNEL: frozenset({_R.DONE, _R.ABANDONED}),
    _R.DONE: frozenset({_R.ABANDONED}),
    _R.ABANDONED: frozenset(),
}

# The response has begun at the client: an error can no longer be a page, only a cut.
STARTED: Final = frozenset({_R.RESPONDING, _R.TUNNEL, _R.DONE})
# A dyno is being asked: the app's request timeout (H12) runs.
ASKING: Final = frozenset({_R.CONNECTING, _R.SENT})


def check_request(current: RequestState, new: RequestState) -> RequestState:
    """``new``, if the request side may move there from ``current``; else raise."""
    if new not in REQUEST_TRANSITIONS[current]:
        raise IllegalTransition(f"a request cannot go from {current.value} to {new.value}")
    return new


def check_response(current: ResponseState, new: ResponseState) -> ResponseState:
    """``new``, if the response side may move there from ``current``; else raise."""
    if new not in RESPONSE_TRANSITIONS[current]:
        raise IllegalTransition(f"a response cannot go from {current.value} to {new.value}")
    return new
