"""Click options that several commands share: ``--platform``, ``--ca-cert`` and ``--insecure``.

A command adds them with one decorator each, ``@platform_option("copy")`` and
``@registry_options``, and passes the parsed values to
:func:`edgetrim.transports.open_image`. Nothing here imports httpx, so a command that reads
no registry pays nothing for these options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from edgetrim.image.model import Platform

if TYPE_CHECKING:
    from edgetrim.transports.registry_client import RegistryOptions

_Command = TypeVar("_Command", bound=Callable[..., object])


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


def platform_option(verb: str) -> Callable[[_Command], _Command]:
    """Return the ``--platform`` option; ``verb`` names what the command does with the image."""
    return click.option(
        "--platform",
        callback=parse_platform,
        metavar="OS/ARCH[/VARIANT]",
        help=f"Which image of a multi-platform SOURCE to {verb} (default: this machine's "
        "platform).",
    )


def registry_options(command: _Command) -> _Command:
    """Add ``--ca-cert`` and ``--insecure``, which set how docker:// registries are reached."""
    command = click.option(
        "--insecure",
        is_flag=True,
        envvar="EDGETRIM_INSECURE",
        help="Allow plain HTTP to docker:// registries on localhost, 127.0.0.0/8 or ::1 when "
        "HTTPS fails. Has no effect on other hosts. Also set by EDGETRIM_INSECURE=1.",
    )(command)
    return click.option(
        "--ca-cert",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="EDGETRIM_CA_CERT",
        help="PEM file of extra CA certificates to trust for docker:// registries, besides the "
        "system's. Also read from EDGETRIM_CA_CERT.",
    )(command)


def registry_settings(ca_cert: Path | None, insecure: bool) -> RegistryOptions:
    """Return the registry options of ``--ca-cert`` and ``--insecure`` over the environment's.

    This imports httpx (about 0.2 s), so call it only when a reference is docker://.
    """
    from edgetrim.transports.registry_client import RegistryOptions

    return RegistryOptions.from_environment(ca_cert=ca_cert, insecure=insecure or None)
