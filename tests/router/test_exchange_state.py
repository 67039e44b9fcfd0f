"""The exchange's state tables (router/exchange_state.py), walked without sockets."""

from __future__ import annotations

import pytest

from dynos.router.exchange_state import (
    ASKING,
    REQUEST_TRANSITIONS,
    RESPONSE_TRANSITIONS,
    STARTED,
    IllegalTransition,
    RequestState,
    ResponseState,
    check_request,
    check_response,
)

R = ResponseState

# Every move the router makes, with what makes it (exchange.py / answer.py).
EXPECTED = {
    (R.ROUTING, R.WAKING): "an idle app: wait for its dyno to wake",
    (R.ROUTING, R.CONNECTING): "a dyno and no pooled connection to it",
    (R.ROUTING, R.SENT): "a dyno and a pooled connection",
    (R.ROUTING, R.DONE): "a page from the router: 404, H10, H14",
    (R.WAKING, R.CONNECTING): "the app woke",
    (R.WAKING, R.SENT): "the app woke, a pooled connection",
    (R.WAKING, R.DONE): "H20",
    (R.CONNECTING, R.CONNECTING): "refused or timed out: the next dyno",
    (R.CONNECTING, R.SENT): "connected: the request goes",
    (R.CONNECTING, R.DONE): "H12, H19, H21, H99",
    (R.SENT, R.CONNECTING): "a retry on a new connection",
    (R.SENT, R.SENT): "a retry on a pooled connection",
    (R.SENT, R.RESPONDING): "the response head",
    (R.SENT, R.TUNNEL): "101",
    (R.SENT, R.DONE): "H12, H13, H17, H99",
    (R.RESPONDING, R.DONE): "the whole response, or cut off (H17, H18)",
    (R.TUNNEL, R.DONE): "the dyno closed the tunnel",
}


def test_the_table_holds_exactly_the_moves_the_router_makes() -> None:
    allowed = {
        (a, b)
        for a, targets in RESPONSE_TRANSITIONS.items()
        for b in targets
        if b is not R.ABANDONED
    }
    assert allowed == set(EXPECTED)


def test_every_state_but_abandoned_may_be_abandoned_and_abandoned_is_final() -> None:
    for state in ResponseState:
        if state is R.ABANDONED:
            assert RESPONSE_TRANSITIONS[state] == frozenset()
        else:
            assert check_response(state, R.ABANDONED) is R.ABANDONED


def test_every_state_is_reachable_from_routing_and_every_path_ends() -> None:
    seen = {R.ROUTING}
    todo = [R.ROUTING]
    while todo:
        for nxt in RESPONSE_TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(ResponseState)
    # From every state DONE or ABANDONED can be reached: no exchange is stuck for good.
    for state in ResponseState:
        if state not in (R.DONE, R.ABANDONED):
            assert {R.DONE, R.ABANDONED} & RESPONSE_TRANSITIONS[state] or any(
                R.DONE in RESPONSE_TRANSITIONS[n] for n in RESPONSE_TRANSITIONS[state]
            )


@pytest.mark.parametrize(
    ("current", "new"),
    [(a, b) for a in ResponseState for b in ResponseState if b not in RESPONSE_TRANSITIONS[a]],
)
def test_a_move_the_table_does_not_list_raises(current: ResponseState, new: ResponseState) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {new.value}"):
        check_response(current, new)


def test_nothing_goes_back_once_the_response_started() -> None:
    for state in STARTED:
        assert not RESPONSE_TRANSITIONS[state] & {R.ROUTING, R.WAKING, R.CONNECTING, R.SENT}
    assert not STARTED & ASKING


def test_the_request_side_is_read_once() -> None:
    assert check_request(RequestState.RECEIVING, RequestState.RECEIVED) is RequestState.RECEIVED
    assert REQUEST_TRANSITIONS[RequestState.RECEIVED] == frozenset()
    with pytest.raises(IllegalTransition):
        check_request(RequestState.RECEIVED, RequestState.RECEIVED)
    with pytest.raises(IllegalTransition):
        check_request(RequestState.RECEIVED, RequestState.RECEIVING)
