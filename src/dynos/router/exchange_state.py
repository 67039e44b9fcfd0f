"""The states of one exchange (a request and its response), and the moves allowed between them.

As h11 does for a connection, each side has a state of its own and a table of where it may
go next; a move the table does not list is a bug in the router and raises
``IllegalTransition`` (which the router answers H99, or a cut connection, like any bug of its
own). Nothing here does I/O: ``tests/router/test_exchange_state.py`` walks the tables.

The request side, as the client connection reads it::

    RECEIVING ──▶ RECEIVED          (the request's end was read)

The response side, as the exchange works on it::

    ROUTING ──▶ WAKING ──▶ CONNECTING ⟲ ──▶ SENT ⟲ ──▶ RESPONDING ──▶ DONE
       │          │            │  ▲          │ │  └──────▶ TUNNEL ──────▶ │
       │          │            │  └──────────┘ │  (a retry)               │
       └──────────┴────────────┴───────────────┴──▶ DONE (a page from the router: 404, H1x)
    any state ──▶ ABANDONED (the client left, or its request broke; the dyno side is dropped)

``CONNECTING ⟲``: a refused or timed-out connect, the next dyno. ``SENT ⟲``: the dyno closed
the connection before any byte of the response and the request may be sent again (see
``retry.py``), on a pooled connection. From ``SENT`` a retry may also open a connection
(``CONNECTING``). ``DONE`` means nothing more goes to the client: the whole response, a page
from the router, or a response cut off halfway (H17, H18).
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


class ResponseState(enum.Enum):
    ROUTING = "routing"  # read, not yet given a dyno (queued behind a pipelined request, too)
    WAKING = "waking"  # waiting for an idle app's dyno to come up (H20 if it does not)
    CONNECTING = "connecting"  # opening a connection to a dyno
    SENT = "sent"  # the request went to a dyno; no response head yet (H12 if none in time)
    RESPONDING = "responding"  # the response head went to the client; the body follows
    TUNNEL = "tunnel"  # the dyno switched protocols (101): bytes pass both ways
    DONE = "done"  # nothing more goes to the client
    ABANDONED = "abandoned"  # the client is gone: the dyno side is let go


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
