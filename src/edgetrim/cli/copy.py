"""``edgetrim copy SOURCE DEST``: copy an image between transports, as ``skopeo copy`` does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from edgetrim.cli.options import (
    parse_platform,
    platform_option,
    registry_options,
    registry_settings,
)
from edgetrim.image.model import Platform
from edgetrim.transports import open_image, write_image, written_digest_name

# cli/minimize.py imports parse_platform from this module.
__all__ = ["copy_command", "parse_platform"]


@click.command(
    "copy",
    short_help="Copy the image SOURCE to DEST and print its digest at DEST.",
)
@click.argument("source")
@click.argument("dest")
@platform_option("copy")
@registry_options
@click.option(
    "--chunk-size",
    type=click.IntRange(min=0),
    default=16 << 20,
    show_default=True,
    metavar="BYTES",
    help="Bytes per request of a chunked upload to a registry; 0 uploads each blob in one request.",
)
def copy_command(
    source: str,
    dest: str,
    platform: Platform | None,
    ca_cert: Path | None,
    insecure: bool,
    chunk_size: int,
) -> None:
    """Copy the image SOURCE to DEST and print the digest that identifies it there.

    SOURCE and DEST are image references: docker-archive:PATH, oci:DIR[:REF],
    oci-archive:FILE[:REF], docker://HOST/REPO[:TAG|@DIGEST] or docker-daemon:NAME:TAG.
    Registry credentials come from config.json in $DOCKER_CONFIG or ~/.docker.
    """
    options = replace(registry_settings(ca_cert, insecure), chunk_size=chunk_size or None)
    with open_image(source, platform=platform, registry=options) as image:
        digest = write_image(image, dest, registry=options)
    click.echo(f"copied {source} to {dest} ({written_digest_name(dest)} {digest})")
