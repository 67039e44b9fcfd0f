"""What releases need of a builder: the host's (build.py, uv in a sandbox) or the docker
backend's (container_build.py, uv in a container of the stack image)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Protocol

from dynos.core.sizes import DynoSize

if TYPE_CHECKING:
    from dynos.platform.build import Slug


class SlugBuilder(Protocol):
    def build(
        self, app_id: str, slug: Slug, size: DynoSize, config: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        """Build ``slug`` in place, yielding output lines; BuildFailed when it fails."""
        ...

    def venv_bytes(self, slug_id: str) -> dict[str, int]:
        """Sizes of the slug's parts the builder already knows (not walked again)."""
        ...

    async def forget(self, app_id: str) -> None:
        """The app was destroyed: what the builder kept of it goes."""
        ...
