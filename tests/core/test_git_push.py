"""The git push rules (core/git_push.py): which URLs reach git http-backend, what a push
deploys or why it is refused, and how a CGI answer's head is read."""

from __future__ import annotations

import pytest

from dynos.core.git_push import (
    ZERO_ID,
    Deploy,
    GitPath,
    RefUpdate,
    Refuse,
    parse_cgi_head,
    parse_git_path,
    parse_ref_updates,
    plan_push,
    split_cgi_head,
)
from dynos.errors import BadRequest, NotFound

A = "a" * 40
B = "b" * 40


def test_the_three_smart_protocol_endpoints_of_an_app_repository_are_served() -> None:
    assert parse_git_path("/shop.git/info/refs", "service=git-receive-pack", "GET") == GitPath(
        "shop", "/info/refs", "git-receive-pack"
    )
    assert parse_git_path("/shop.git/git-upload-pack", "", "POST").service == "git-upload-pack"
    pushing = parse_git_path("/shop.git/git-receive-pack", "", "POST")
    assert pushing.pushes and pushing.endpoint == "/git-receive-pack"


@pytest.mark.parametrize(
    "path",
    [
        "/shop.git/HEAD",  # the dumb protocol: a repository's files are not served
        "/shop.git/objects/info/packs",
        "/shop.git/../other.git/info/refs",
        "/Shop.git/info/refs",
        "/shop/info/refs",
        "/a.git/info/refs",  # not an app name
        "/shop.git/info/refs/",
        "/shop.git/info/refs\n",
    ],
)
def test_anything_else_is_not_found(path: str) -> None:
    with pytest.raises(NotFound):
        parse_git_path(path, "service=git-upload-pack", "GET")


def test_info_refs_needs_a_smart_service_and_each_endpoint_its_method() -> None:
    with pytest.raises(NotFound, match="smart HTTP"):
        parse_git_path("/shop.git/info/refs", "", "GET")
    with pytest.raises(NotFound):
        parse_git_path("/shop.git/info/refs", "service=git-archive", "GET")
    with pytest.raises(BadRequest):
        parse_git_path("/shop.git/git-receive-pack", "", "GET")
    with pytest.raises(BadRequest):
        parse_git_path("/shop.git/info/refs", "service=git-upload-pack", "POST")


def test_ref_updates_are_read_and_a_line_that_is_not_one_is_refused() -> None:
    text = f"{ZERO_ID} {A} refs/heads/main\n{A} {B} refs/heads/topic\n"
    assert parse_ref_updates(text) == [
        RefUpdate(ZERO_ID, A, "refs/heads/main"),
        RefUpdate(A, B, "refs/heads/topic"),
    ]
    for bad in (f"{A} {B}", f"{A} xyz refs/heads/main", f"{A} {B} refs/heads/a b"):
        with pytest.raises(BadRequest):
            parse_ref_updates(bad)


@pytest.mark.parametrize("branch", ["main", "master"])
def test_a_push_to_main_or_master_deploys(branch: str) -> None:
    update = RefUpdate(A, B, f"refs/heads/{branch}")
    assert plan_push([update]) == Deploy(update)


def test_a_push_to_another_branch_is_refused_with_herokus_words() -> None:
    plan = plan_push([RefUpdate(ZERO_ID, A, "refs/heads/topic")])
    assert isinstance(plan, Refuse)
    assert plan.lines[0] == "Pushed to branch other than [main, master], skipping build."
    assert any("git push dynos BRANCH:main" in line for line in plan.lines)
    # With main in the same push: nothing is deployed, nothing updated.
    mixed = [RefUpdate(A, B, "refs/heads/main"), RefUpdate(ZERO_ID, A, "refs/tags/v1")]
    assert isinstance(plan_push(mixed), Refuse)


def test_deleting_main_pushing_both_branches_or_nothing_is_refused() -> None:
    deleting = plan_push([RefUpdate(A, ZERO_ID, "refs/heads/main")])
    assert isinstance(deleting, Refuse) and "cannot delete main" in deleting.lines[0]
    both = [RefUpdate(ZERO_ID, A, "refs/heads/main"), RefUpdate(ZERO_ID, A, "refs/heads/master")]
    assert isinstance(plan_push(both), Refuse)
    assert isinstance(plan_push([]), Refuse)


def test_a_cgi_head_gives_the_status_and_the_headers() -> None:
    head = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nExpires: never"
    assert parse_cgi_head(head) == (404, [("Content-Type", "text/plain"), ("Expires", "never")])
    assert parse_cgi_head(b"Content-Type: application/x-git-upload-pack-result") == (
        200,
        [("Content-Type", "application/x-git-upload-pack-result")],
    )
    for bad in (b"no colon here", b"Status: abc", b" Folded: header"):
        with pytest.raises(ValueError):
            parse_cgi_head(bad)


def test_the_head_ends_at_the_first_blank_line_whichever_its_line_ends() -> None:
    assert split_cgi_head(b"A: b\r\n\r\nbody\n\nmore") == (b"A: b", b"body\n\nmore")
    assert split_cgi_head(b"A: b\n\nbody\r\n\r\n") == (b"A: b", b"body\r\n\r\n")
    assert split_cgi_head(b"A: b\r\n") is None
    with pytest.raises(ValueError):
        split_cgi_head(b"A" * 20000)
