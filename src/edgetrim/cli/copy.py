"""``edgetrim copy SOURCE DEST``: copy an image between transports, as ``skopeo copy`` does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from edgetrim.image.model import Platform
from edgetrim.transports import RegistryOptions, open_image, write_image


def parse_platform(
    context: click.Context | None, parameter: click.Parameter | None, value: str | None
) -> Platform | None:
    """Turn ``--platform os/arch[/variant]`` into a Platform, or a usage error naming it."""
    if value is None:
        return None
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise click.BadParameter(f"{value!r} is not os/arch[/variant], e.g. linux/arm64/v8")
    return Platform(*parts)


@click.command("copy")
@click.argument("source")
@click.argument("dest")
@click.option(
    "--platform",
    callback=parse_platform,
    metavar="OS/ARCH[/VARIANT]",
    help="Which image of a multi-platform SOURCE to copy (default: this machine's platform).",
)
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="EDGETRIM_CA_CERT",
    help="PEM file of extra CA certificates to trust for docker:// registries, besides the "
    "system's. Also read from EDGETRIM_CA_CERT.",
)
@click.option(
    "--insecure",
    is_flag=True,
    envvar="EDGETRIM_INSECURE",
    help="Allow plain HTTP to docker:// registries on localhost, 127.0.0.0/8 or ::1 when "
    "HTTPS fails. Has no effect on other hosts. Also set by EDGETRIM_INSECURE=1.",
)
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
    options = replace(
        RegistryOptions.from_environment(ca_cert=ca_cert, insecure=insecure or None),
        chunk_size=chunk_size or None,
    )
    with open_image(source, platform=platform, registry=options) as image:
        digest = write_image(image, dest, registry=options)
    click.echo(f"copied {source} to {dest} ({digest})")
