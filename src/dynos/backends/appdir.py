"""Each dyno's app directory: its own writable view of its release, gone when the dyno ends.

On Heroku a dyno may write anywhere in its app directory (a sqlite file, a socket, static
files collected at run time); what it writes is its own, other dynos of the app never see
it, and a restart starts again from the slug. The release itself is shared by every dyno of
the app and never changes, so each dyno gets a view of it:

- :class:`AppOverlay`, where the dyno has a mount namespace of its own (root: scratch.py):
  an overlayfs mounted over the release at the release's own path, the release as its
  read-only lower layer and the writable upper layer on the dyno's scratch tmpfs. A write
  copies the file up into the scratch, where it counts against the dyno's scratch cap and
  memory, and vanishes with the namespace when the dyno's last process exits. Costs one
  mount, whatever the release's size. The directory holding the releases is bound read-only
  in the namespace, so the dyno's user can write no release, its own or an older one,
  except through its overlay (the releases are group-writable so that the overlay lets the
  user change files of the release: the check is made against the lower file's mode).
- :class:`AppCopy`, elsewhere (without root): a copy of the release, made before the dyno
  starts in ``<home>/app-dirs/`` and removed when it ends (``cp --reflink=auto``: a clone
  where the filesystem can, else a copy, whose cost grows with the release).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dynos.backends import linux

OVERLAY_FLAGS = linux.MS_NOSUID | linux.MS_NODEV


@dataclass(frozen=True)
class AppOverlay:
    """The overlay of one dyno over ``release``, writable by ``uid``:``gid`` (the dyno's
    user). Its two methods run in the child, as root, inside its new mount namespace."""

    release: Path
    uid: int
    gid: int

    def open_release(self) -> int:
        """Before anything covers it: an O_PATH descriptor of the release (the lower layer)."""
        return os.open(self.release, os.O_PATH | os.O_DIRECTORY)

    def make_layers(self, scratch_root: str) -> int:
        """Make the upper and work directories on the scratch tmpfs mounted at
        ``scratch_root`` (before a bind covers it); returns an O_PATH descriptor of them."""
        base = f"{scratch_root}/app"
        os.mkdir(base, 0o700)
        os.mkdir(f"{base}/upper")
        os.mkdir(f"{base}/work", 0o700)
        # The merged directory's own owner and mode are the upper one's: the dyno's user
        # owns its app directory, as /app is the dyno user's on Heroku.
        os.chown(f"{base}/upper", self.uid, self.gid)
        os.chmod(f"{base}/upper", 0o755)
        return os.open(base, os.O_PATH | os.O_DIRECTORY)

    def mount(self, release_fd: int, layers_fd: int, *, unprivileged: bool = False) -> None:
        """Bind the releases' directory read-only, then mount the overlay on the release.
        Paths go to overlayfs as /proc/self/fd links: no escaping, and they reach layers
        that other mounts now hide. ``unprivileged``: in a user namespace, where overlayfs
        keeps its own attributes in user.* extended attributes. Raises OSError."""
        releases = str(self.release.parent)
        linux.mount(releases, releases, None, linux.MS_BIND | linux.MS_REC)
        linux.remount_read_only(releases)
        options = (
            f"lowerdir=/proc/self/fd/{release_fd},upperdir=/proc/self/fd/{layers_fd}/upper,"
            f"workdir=/proc/self/fd/{layers_fd}/work"
        )
        if unprivileged:
            options += ",userxattr"
        linux.mount("dynos-app", str(self.release), "overlay", OVERLAY_FLAGS, options)
        os.close(release_fd)
        os.close(layers_fd)


@dataclass(frozen=True)
class UnprivilegedOverlay:
    """Without root, where the kernel lets any user make a user namespace: the same overlay,
    in a user and mount namespace of the dyno's own (as the server's own uid, mapped to
    itself), its layers on a tmpfs of ``size_bytes`` mounted over the release first."""

    release: Path
    size_bytes: int

    def enter(self) -> None:
        """Run in the child between fork and exec. Raises OSError."""
        linux.unshare_user_and_mounts()
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        overlay = AppOverlay(self.release, os.geteuid(), os.getegid())
        release_fd = overlay.open_release()
        stage = str(self.release)  # covered by the overlay in turn
        options = f"size={self.size_bytes},mode=0700"
        linux.mount("dynos-app-layers", stage, "tmpfs", OVERLAY_FLAGS, options)
        overlay.mount(release_fd, overlay.make_layers(stage), unprivileged=True)


def unprivileged_overlay_works(scratch: Path) -> bool:
    """Whether this process can give a dyno an :class:`UnprivilegedOverlay`: tried on a
    directory made under ``scratch`` (kernels and distributions may refuse unprivileged
    user namespaces, or overlayfs in them)."""
    probe = scratch / f"overlay-probe-{os.getpid()}"
    release = probe / "release"
    try:
        release.mkdir(parents=True)
        overlay = UnprivilegedOverlay(release, 1024 * 1024)

        def setup() -> None:
            overlay.enter()
            os.chdir(release)

        result = subprocess.run(
            ["/bin/sh", "-c", "echo written > written"],
            preexec_fn=setup,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0 and not (release / "written").exists()
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove(probe)


class AppCopy:
    """Copies of releases, one per running dyno, under ``root`` (``<home>/app-dirs``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def make(self, release: Path, name: str) -> Path:
        """A fresh copy of ``release`` for the dyno ``name`` (its key, unique among live
        ones: ``<app id>/web.1/3``). Raises OSError."""
        target = self.root / name.replace("%", "%25").replace("/", "%2F")
        self.root.mkdir(mode=0o700, exist_ok=True)
        await asyncio.to_thread(_remove, target)  # a copy left by a crash of this server
        process = await asyncio.create_subprocess_exec(
            "cp", "-a", "--reflink=auto", "--", str(release), str(target),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, error = await process.communicate()
        if process.returncode != 0:
            await asyncio.to_thread(_remove, target)
            raise OSError(f"could not copy {release}: {error.decode(errors='replace').strip()}")
        return target

    async def remove(self, copy: Path) -> None:
        """The dyno ended: its copy goes (in a thread: a large one takes a while)."""
        await asyncio.to_thread(_remove, copy)

    def remove_all(self) -> None:
        """At start: the copies a server that died left behind."""
        _remove(self.root)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
