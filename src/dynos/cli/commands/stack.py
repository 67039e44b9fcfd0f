"""``stack:build``: the stack image the docker backend runs builds and dynos in
(:mod:`dynos.backends.stack`); server code, imported only when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from dynos.core.containers import DEFAULT_STACK_IMAGE, MIRROR, check_image_name
from dynos.errors import UserError


@click.command("stack:build")
@click.option(
    "--image",
    default=DEFAULT_STACK_IMAGE,
    show_default=True,
    help="Name (and tag) of the image to make; the server's --stack-image.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the root filesystem's tarball is kept between builds "
    "(default: /var/cache/dynos for root, else ~/.cache/dynos).",
)
@click.option("--mirror", default=MIRROR, show_default=True, help="The Debian mirror.")
@click.option("--refresh", is_flag=True, help="Run debootstrap again, not the cached tarball.")
def stack_build(image: str, cache_dir: Path | None, mirror: str, refresh: bool) -> None:
    """Make the stack image (Debian bookworm with python3 and build tools) with debootstrap
    and 'docker import', for 'dynos server --backend docker'. Needs root and a Docker engine."""
    from dynos.backends.stack import build_stack, default_cache_dir

    try:
        check_image_name(image)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    seconds = build_stack(
        image,
        (cache_dir or default_cache_dir()).expanduser().resolve(),
        mirror=mirror,
        refresh=refresh,
        say=click.echo,
    )
    click.echo(f"Made {image} in {seconds:.0f} s")


COMMANDS: dict[str, click.Command] = {"stack:build": stack_build}
