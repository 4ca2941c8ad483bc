"""Parse image references in skopeo's transport syntax.

The supported forms are ``docker-archive:PATH[:NAME[:TAG]]``, ``oci:DIR[:REF]`` and
``docker-daemon:NAME[:TAG]`` or ``docker-daemon:sha256:<image id>``. As in skopeo, PATH and
DIR end at their first colon, so everything after it names the image inside. ``@N`` in place
of NAME or REF selects the image at index N of the archive's manifest.json or the layout's
index.json.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from edgetrim.errors import InvalidReferenceError

SUPPORTED_FORMS = (
    "docker-archive:PATH[:NAME[:TAG]], oci:DIR[:REF], docker-daemon:NAME[:TAG] "
    "or docker-daemon:sha256:<image id>"
)
_UNSUPPORTED_YET = {
    "docker": "docker://",
    "oci-archive": "oci-archive:",
    "containers-storage": "containers-storage:",
    "dir": "dir:",
}

# The grammar of a Docker image name, from the distribution/reference package: an optional
# registry host with port, then lowercase path components separated by slashes.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# The grammar of org.opencontainers.image.ref.name in the OCI image layout spec.
_OCI_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_OCI_REF_RE = re.compile(rf"^{_OCI_REF_COMPONENT}(?:/{_OCI_REF_COMPONENT})*$")
_SOURCE_INDEX_RE = re.compile(r"^@([0-9]{1,9})$")
_MAX_NAME_LENGTH = 255


class Transport(enum.Enum):
    """The storage format of an image, named as in skopeo references."""

    DOCKER_ARCHIVE = "docker-archive"
    OCI = "oci"
    DOCKER_DAEMON = "docker-daemon"


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference.

    ``path`` is the archive file or layout folder (None for docker-daemon). ``name`` is the
    image inside: a Docker name in the form ``name:tag`` for docker-archive and docker-daemon
    (or an image ID ``sha256:<hex>`` for docker-daemon), the ref name for oci, or None.
    ``source_index`` is N from an ``@N`` suffix.
    """

    transport: Transport
    text: str
    path: Path | None = None
    name: str | None = None
    source_index: int | None = None

    @property
    def is_image_id(self) -> bool:
        """True when ``name`` is a Docker image ID rather than a tagged name."""
        return self.name is not None and _IMAGE_ID_RE.match(self.name) is not None

    def __str__(self) -> str:
        return self.text


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` into an ImageReference or raise InvalidReferenceError naming it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReferenceError(f"empty image reference; expected {SUPPORTED_FORMS}")
    transport_name, colon, rest = text.partition(":")
    if transport_name in _UNSUPPORTED_YET:
        raise InvalidReferenceError(
            f"image reference {text!r}: transport {_UNSUPPORTED_YET[transport_name]} is not "
            f"supported yet; copy the image with skopeo to one of {SUPPORTED_FORMS}"
        )
    if not colon:
        raise InvalidReferenceError(
            f"image reference {text!r} names no transport; expected {SUPPORTED_FORMS}"
        )
    if transport_name == Transport.DOCKER_ARCHIVE.value:
        return _parse_docker_archive(text, rest)
    if transport_name == Transport.OCI.value:
        return _parse_oci(text, rest)
    if transport_name == Transport.DOCKER_DAEMON.value:
        return _parse_docker_daemon(text, rest)
    raise InvalidReferenceError(
        f"image reference {text!r}: unknown transport {transport_name!r}; "
        f"expected {SUPPORTED_FORMS}"
    )


def normalize_docker_name(text: str) -> str:
    """Return a Docker name as ``name:tag`` in the short form that ``docker save`` records.

    The tag defaults to ``latest``, and the ``docker.io/`` and ``docker.io/library/``
    prefixes are dropped, so ``docker.io/library/busybox`` becomes ``busybox:latest``.
    Raises ValueError if ``text`` is not a valid name, because callers word the error.
    """
    if "@" in text:
        raise ValueError("digest references (NAME@sha256:...) are not supported; use NAME:TAG")
    if len(text) > _MAX_NAME_LENGTH:
        raise ValueError(f"the name is longer than {_MAX_NAME_LENGTH} characters")
    repository, tag = text, "latest"
    last_slash = text.rfind("/")
    last_colon = text.rfind(":")
    if last_colon > last_slash:
        repository, tag = text[:last_colon], text[last_colon + 1 :]
    if not _NAME_RE.match(repository):
        raise ValueError(f"{repository!r} is not a valid image name")
    if not _TAG_RE.match(tag):
        raise ValueError(f"{tag!r} is not a valid tag")
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if repository.startswith(prefix):
            repository = repository[len(prefix) :]
            break
    return f"{repository}:{tag}"


def check_oci_ref(text: str) -> str:
    """Return ``text`` if it is a valid OCI ref name; raise ValueError otherwise."""
    if not _OCI_REF_RE.match(text):
        raise ValueError(f"{text!r} is not a valid OCI ref name (letters, digits, -._:@+/)")
    return text


def _parse_docker_archive(text: str, rest: str) -> ImageReference:
    path, _, inner = rest.partition(":")
    if not path:
        raise _invalid(text, "the archive path is empty")
    if not inner:
        return ImageReference(Transport.DOCKER_ARCHIVE, text, Path(path))
    index = _source_index(inner)
    if index is not None:
        return ImageReference(Transport.DOCKER_ARCHIVE, text, Path(path), source_index=index)
    return ImageReference(Transport.DOCKER_ARCHIVE, text, Path(path), _docker_name(text, inner))


def _parse_oci(text: str, rest: str) -> ImageReference:
    path, _, inner = rest.partition(":")
    if not path:
        raise _invalid(text, "the layout folder is empty")
    if not inner:
        return ImageReference(Transport.OCI, text, Path(path))
    index = _source_index(inner)
    if index is not None:
        return ImageReference(Transport.OCI, text, Path(path), source_index=index)
    try:
        return ImageReference(Transport.OCI, text, Path(path), check_oci_ref(inner))
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None


def _parse_docker_daemon(text: str, rest: str) -> ImageReference:
    if not rest:
        raise _invalid(text, "the image name is empty")
    if rest.startswith("sha256:"):
        if not _IMAGE_ID_RE.match(rest):
            raise _invalid(text, "an image ID must be sha256: followed by 64 lowercase hex digits")
        return ImageReference(Transport.DOCKER_DAEMON, text, name=rest)
    return ImageReference(Transport.DOCKER_DAEMON, text, name=_docker_name(text, rest))


def _docker_name(text: str, name: str) -> str:
    try:
        return normalize_docker_name(name)
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None


def _source_index(inner: str) -> int | None:
    match = _SOURCE_INDEX_RE.match(inner)
    return int(match.group(1)) if match else None


def _invalid(text: str, reason: str) -> InvalidReferenceError:
    return InvalidReferenceError(
        f"invalid image reference {text!r}: {reason}; expected {SUPPORTED_FORMS}"
    )
