"""App users (root only): made on demand, tagged with their server's home, and removed when
that server stops or, after a crash, by the next server (system uids and gids are few)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.backends.isolation import AppUsers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="making users needs root")


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[tuple[AppUsers, AppUsers]]:
    mine, other = tmp_path / "mine", tmp_path / "other"
    for home in (mine, other):
        (home / "slugs").mkdir(parents=True)
    users = AppUsers(mine), AppUsers(other)
    yield users
    for each in users:
        each.remove_all()


def test_a_user_is_made_once_per_app_and_tagged_with_its_home(
    homes: tuple[AppUsers, AppUsers],
) -> None:
    mine, _ = homes
    app_id = str(uuid.uuid4())
    user = mine.for_app(app_id)
    assert mine.for_app(app_id) == user
    entry = pwd.getpwnam(user.name)
    assert (entry.pw_uid, entry.pw_gid) == (user.uid, user.gid)
    assert entry.pw_gecos == f"dynos {mine.home}"


def test_stopping_removes_this_servers_users_only(homes: tuple[AppUsers, AppUsers]) -> None:
    mine, other = homes
    ours, theirs = mine.for_app(str(uuid.uuid4())), other.for_app(str(uuid.uuid4()))
    assert mine.remove_all() == 1
    assert not exists(ours.name)
    assert exists(theirs.name)


def test_starting_removes_users_of_this_home_and_of_homes_that_are_gone(
    homes: tuple[AppUsers, AppUsers], tmp_path: Path
) -> None:
    mine, other = homes
    gone_home = tmp_path / "gone"
    (gone_home / "slugs").mkdir(parents=True)
    gone = AppUsers(gone_home)
    left_by_gone = gone.for_app(str(uuid.uuid4()))
    shutil.rmtree(gone_home)
    left_by_me = mine.for_app(str(uuid.uuid4()))
    running_elsewhere = other.for_app(str(uuid.uuid4()))
    # The gone home's user is any server's to remove: a server that starts meanwhile on this
    # machine (in the other pytest-xdist worker, say) may remove it first. This home's user
    # is this server's alone.
    assert mine.remove_stale() in (1, 2)
    assert not exists(left_by_gone.name)
    assert not exists(left_by_me.name)
    assert exists(running_elsewhere.name)


def test_slugs_are_closed_before_their_group_can_be_given_to_another_user(
    homes: tuple[AppUsers, AppUsers],
) -> None:
    mine, _ = homes
    user = mine.for_app(str(uuid.uuid4()))
    slug = mine.home / "slugs" / "some-slug"
    slug.mkdir()
    os.chown(slug, 0, user.gid)
    mine.remove_all()
    assert slug.stat().st_gid == 0


def test_what_a_removed_user_left_in_tmp_goes_with_it(homes: tuple[AppUsers, AppUsers]) -> None:
    """A later user may get the same uid: it must not find the old app's files."""
    mine, _ = homes
    user = mine.for_app(str(uuid.uuid4()))
    left = Path("/tmp") / f"dynos-test-left-{user.name}"
    kept = Path("/tmp") / f"dynos-test-kept-{user.name}"
    left.write_text("secret")
    kept.write_text("root's")
    os.chown(left, user.uid, user.gid)
    try:
        mine.remove_all()
        assert not left.exists()
        assert kept.exists()
    finally:
        left.unlink(missing_ok=True)
        kept.unlink()


def test_a_home_with_a_colon_is_tagged_and_cleaned_up(tmp_path: Path) -> None:
    home = tmp_path / "dynos:prod"
    (home / "slugs").mkdir(parents=True)
    users = AppUsers(home)
    user = users.for_app(str(uuid.uuid4()))
    assert users.remove_all() == 1
    assert not exists(user.name)


def test_an_add_on_gets_a_user_of_its_own_per_home_removed_with_the_app_users(
    homes: tuple[AppUsers, AppUsers],
) -> None:
    mine, other = homes
    app = mine.for_app(str(uuid.uuid4()))
    addon = mine.for_addon("redis-solid-31337")
    assert mine.for_addon("redis-solid-31337") == addon
    assert addon.name.startswith("dyno-addon-") and addon.uid not in (app.uid, 0)
    assert other.for_addon("redis-solid-31337").uid != addon.uid  # same name, other server
    assert mine.remove_all() == 2
    assert not exists(addon.name) and not exists(app.name)


def test_what_a_removed_user_left_anywhere_goes_with_it(homes: tuple[AppUsers, AppUsers]) -> None:
    """Not a fixed list of places: any directory it could write in, /run/lock or one made
    open to all by someone else, anywhere on the machine."""
    mine, _ = homes
    user = mine.for_app(str(uuid.uuid4()))
    unusual = Path("/var/lib") / f"dynos-test-open-{user.name}"
    unusual.mkdir()
    left = [unusual / "secret", Path("/run/lock") / f"dynos-test-{user.name}"]
    try:
        unusual.chmod(0o1777)
        for path in left:
            path.write_text("secret")
            path.chmod(0o600)
            os.chown(path, user.uid, user.gid)
        mine.remove_all()
        assert [path for path in left if path.exists()] == []
        assert not exists(user.name)
    finally:
        for path in left:
            path.unlink(missing_ok=True)
        unusual.rmdir()


def test_a_user_whose_files_cannot_be_deleted_keeps_its_uid(
    homes: tuple[AppUsers, AppUsers],
) -> None:
    """While a file of its remains, its uid must not go to another app, which would own it."""
    mine, _ = homes
    user = mine.for_app(str(uuid.uuid4()))
    stuck = Path("/tmp") / f"dynos-test-stuck-{user.name}"
    stuck.write_text("secret")
    os.chown(stuck, user.uid, user.gid)
    subprocess.run(["chattr", "+i", str(stuck)], check=True)  # not even root may delete it
    try:
        assert mine.remove_all() == 0
        assert pwd.getpwnam(user.name).pw_uid == user.uid
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert mine.remove_all() == 1  # the next attempt, once it could be deleted
    assert not stuck.exists()


def test_a_destroyed_apps_user_is_removed_and_the_others_stay(
    homes: tuple[AppUsers, AppUsers],
) -> None:
    mine, other = homes
    destroyed, kept = str(uuid.uuid4()), str(uuid.uuid4())
    gone_user, kept_user = mine.for_app(destroyed), mine.for_app(kept)
    elsewhere = other.for_app(str(uuid.uuid4()))
    assert mine.remove_app(destroyed)
    assert not exists(gone_user.name)
    assert exists(kept_user.name) and exists(elsewhere.name)
    assert not other.remove_app(kept)  # not that server's user
    assert exists(kept_user.name)
