"""Read and write images by reference, with no Docker engine needed except for docker-daemon:.

References use skopeo's transport syntax::

    docker-archive:PATH[:NAME[:TAG]]   a docker save archive (or a folder it was extracted to)
    oci:DIR[:REF]                      an OCI image layout folder
    oci-archive:FILE[:REF]             an OCI image layout in a tar file
    docker://HOST/REPO[:TAG]           an image in a registry, by tag
    docker://HOST/REPO@sha256:<hex>    the same, by manifest digest
    docker-daemon:NAME[:TAG]           an image in the Docker engine that DOCKER_HOST names
    docker-daemon:sha256:<image id>    the same, by image ID (reading only)

``@N`` in place of NAME or REF selects the N-th image of a multi-image archive or layout.
How registries are reached (CA, plain HTTP, retries, chunk size) is set by
:class:`RegistryOptions`; credentials come from Docker's config.json.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from edgetrim.errors import ImageFormatError, ImageNotFoundError, InvalidReferenceError
from edgetrim.image.digest import Digest
from edgetrim.image.model import Image, Platform
from edgetrim.transports.docker_archive import read_docker_archive, write_docker_archive
from edgetrim.transports.oci_archive import read_oci_archive, write_oci_archive
from edgetrim.transports.oci_layout import platform_matches, read_oci_layout, write_oci_layout
from edgetrim.transports.reference import (
    ImageReference,
    RegistryReference,
    Transport,
    check_oci_ref,
    normalize_docker_name,
    parse_reference,
)

# The registry and Docker engine transports import httpx and the Docker SDK, which take about
# 0.2 s to import. So they are imported when a docker:// or docker-daemon: reference is used,
# and RegistryOptions when it is first accessed.
if TYPE_CHECKING:
    from edgetrim.transports.registry_client import RegistryOptions

__all__ = [
    "ImageReference",
    "RegistryOptions",
    "RegistryReference",
    "Transport",
    "open_image",
    "parse_reference",
    "write_image",
    "written_digest_name",
]


def __getattr__(name: str) -> Any:
    if name == "RegistryOptions":
        from edgetrim.transports.registry_client import RegistryOptions

        return RegistryOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def open_image(
    reference: str,
    *,
    platform: Platform | None = None,
    registry: RegistryOptions | None = None,
) -> Iterator[Image]:
    """Open the image that ``reference`` names and release its files when the block exits.

    ``platform`` chooses from a multi-platform index; without it the host's platform is
    used. When ``platform`` is given, an image built for another platform raises
    ImageNotFoundError. ``registry`` applies to docker:// references and defaults to
    ``RegistryOptions.from_environment()``. Layers can be read only inside the block, because
    the image may read from temporary files, or a registry connection, that end with it.
    """
    ref = parse_reference(reference)
    with _open(ref, platform, registry) as image:
        _check_platform_fields(image, reference)
        if platform is not None and not platform_matches(image.config.platform, platform):
            raise ImageNotFoundError(
                f"{reference}: the image is for {image.config.platform}, not for the "
                f"requested platform {platform}"
            )
        yield image


def _check_platform_fields(image: Image, reference: str) -> None:
    """Reject a config whose os, architecture or variant is not a string.

    ImageConfig.platform passes these fields on unchecked, and everything that prints or
    compares a platform expects strings.
    """
    for key in ("os", "architecture", "variant"):
        value = image.config.data.get(key)
        if value is not None and not isinstance(value, str):
            raise ImageFormatError(
                f"{reference}: the image config's field {key!r} must be a string, found "
                f"{type(value).__name__}; the image is corrupt"
            )


def _open(
    ref: ImageReference, platform: Platform | None, registry: RegistryOptions | None
) -> contextlib.AbstractContextManager[Image]:
    display = ref.text
    if ref.transport is Transport.DOCKER_ARCHIVE:
        assert ref.path is not None
        return read_docker_archive(
            ref.path,
            name=ref.name,
            source_index=ref.source_index,
            platform=platform,
            display=display,
        )
    if ref.transport is Transport.OCI:
        assert ref.path is not None
        return read_oci_layout(
            ref.path,
            ref=ref.name,
            source_index=ref.source_index,
            platform=platform,
            display=display,
        )
    if ref.transport is Transport.OCI_ARCHIVE:
        assert ref.path is not None
        return read_oci_archive(
            ref.path,
            ref=ref.name,
            source_index=ref.source_index,
            platform=platform,
            display=display,
        )
    if ref.transport is Transport.DOCKER:
        from edgetrim.transports.registry import read_registry

        assert ref.registry is not None
        return read_registry(ref.registry, platform=platform, options=registry, display=display)
    from edgetrim.transports.docker_daemon import read_docker_daemon

    assert ref.name is not None
    return read_docker_daemon(ref.name, platform=platform)


def written_digest_name(reference: str) -> str:
    """Name the digest that :func:`write_image` returns for ``reference``, for messages.

    Docker archives and the engine identify an image by its config digest, the image ID;
    the other transports by the digest of the manifest written.
    """
    docker_kinds = (Transport.DOCKER_ARCHIVE, Transport.DOCKER_DAEMON)
    return "image ID" if parse_reference(reference).transport in docker_kinds else "manifest digest"


def write_image(
    image: Image,
    reference: str,
    *,
    tag: str | None = None,
    registry: RegistryOptions | None = None,
) -> Digest:
    """Write ``image`` to ``reference`` and return the digest that identifies it there.

    For oci:, oci-archive: and docker:// that is the digest of the manifest written. docker
    archives and the Docker engine store no manifest, so for docker-archive: and
    docker-daemon: it is the config digest, which Docker uses as the image ID. ``tag`` is the
    name to record when the reference has none: ``NAME[:TAG]`` for the Docker transports, a
    ref name for oci and oci-archive. ``registry`` applies to docker:// references. Every
    writer except docker:// and docker-daemon: writes to temporary files that are renamed into
    place, so an interrupted write leaves no partial output. A registry push uploads the
    manifest last, so an interrupted push leaves no tag that names an incomplete image.
    """
    ref = parse_reference(reference)
    if ref.source_index is not None:
        raise InvalidReferenceError(
            f"{reference}: @INDEX selects an image to read; name the image to write instead"
        )
    if ref.transport is Transport.DOCKER:
        from edgetrim.transports.registry_push import write_registry

        assert ref.registry is not None
        if tag is not None:
            raise InvalidReferenceError(
                f"{reference}: a docker:// reference names its tag; do not pass another one"
            )
        return write_registry(image, ref.registry, options=registry)
    name = _name_to_write(ref, tag)
    if ref.transport is Transport.DOCKER_ARCHIVE:
        assert ref.path is not None
        return write_docker_archive(image, ref.path, repo_tags=[name] if name else [])
    if ref.transport is Transport.OCI:
        assert ref.path is not None
        return write_oci_layout(image, ref.path, ref=name)
    if ref.transport is Transport.OCI_ARCHIVE:
        assert ref.path is not None
        return write_oci_archive(image, ref.path, ref=name)
    if name is None or ref.is_image_id:
        raise InvalidReferenceError(
            f"{reference}: docker-daemon: needs NAME[:TAG] to write an image, not an image ID"
        )
    from edgetrim.transports.docker_daemon import write_docker_daemon

    return write_docker_daemon(image, name)


def _name_to_write(ref: ImageReference, tag: str | None) -> str | None:
    if tag is None:
        return ref.name
    is_oci = ref.transport in (Transport.OCI, Transport.OCI_ARCHIVE)
    check = check_oci_ref if is_oci else normalize_docker_name
    try:
        normalized = check(tag)
    except ValueError as exc:
        raise InvalidReferenceError(f"{ref.text}: invalid tag {tag!r}: {exc}") from None
    if ref.name is not None and ref.name != normalized:
        raise InvalidReferenceError(
            f"{ref.text}: the reference names {ref.name} but tag {tag!r} was also given; "
            "pass only one"
        )
    return normalized
