"""Parse image references in skopeo's transport syntax.

The supported forms are ``docker-archive:PATH[:NAME[:TAG]]``, ``oci:DIR[:REF]``,
``oci-archive:FILE[:REF]``, ``docker://HOST/REPO[:TAG]`` or ``docker://HOST/REPO@DIGEST``, and
``docker-daemon:NAME[:TAG]`` or ``docker-daemon:sha256:<image id>``. As in skopeo, PATH, DIR
and FILE end at their first colon, so everything after it names the image inside. ``@N`` in
place of NAME or REF selects the image at index N of the archive's manifest.json or the
layout's index.json.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgetrim.errors import ImageNotFoundError, InvalidReferenceError

SUPPORTED_FORMS = (
    "docker-archive:PATH[:NAME[:TAG]], oci:DIR[:REF], oci-archive:FILE[:REF], "
    "docker://HOST/REPO[:TAG|@DIGEST], docker-daemon:NAME[:TAG] "
    "or docker-daemon:sha256:<image id>"
)
_UNSUPPORTED_YET = {
    "containers-storage": "containers-storage:",
    "dir": "dir:",
}
# Docker Hub's names: references without a registry host mean this one, and its API is served
# from a different host than its name.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"

# The grammar of a Docker image name, from the distribution/reference package: an optional
# registry host with port, then lowercase path components separated by slashes.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DIGEST_RE = re.compile(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
# The grammar of org.opencontainers.image.ref.name in the OCI image layout spec.
_OCI_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_OCI_REF_RE = re.compile(rf"^{_OCI_REF_COMPONENT}(?:/{_OCI_REF_COMPONENT})*$")
_SOURCE_INDEX_RE = re.compile(r"^@([0-9]{1,9})$")
_MAX_NAME_LENGTH = 255


class Transport(enum.Enum):
    """The storage format of an image, named as in skopeo references."""

    DOCKER_ARCHIVE = "docker-archive"
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER = "docker"
    DOCKER_DAEMON = "docker-daemon"


@dataclass(frozen=True)
class RegistryReference:
    """An image in a registry: host (with port), repository, and a tag or a manifest digest.

    ``registry`` is the host as written (``docker.io`` for names without one);
    ``api_host`` is the host that serves the distribution API for it.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest_reference(self) -> str:
        """The tag or digest that goes into ``/v2/<repository>/manifests/<reference>``."""
        return self.digest or self.tag or "latest"

    @property
    def host_name(self) -> str:
        """The host without port or IPv6 brackets, such as ``127.0.0.1`` or ``::1``."""
        host = self.registry
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rpartition(":")[0] if ":" in host else host

    def with_reference(self, *, tag: str | None = None, digest: str | None = None):
        """Return the same repository with another tag or digest."""
        return RegistryReference(self.registry, self.repository, tag, digest)

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return f"{self.registry}/{self.repository}{suffix}"


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference.

    ``path`` is the archive file or layout folder (None for docker-daemon and docker). ``name``
    is the image inside: a Docker name in the form ``name:tag`` for docker-archive and
    docker-daemon (or an image ID ``sha256:<hex>`` for docker-daemon), the ref name for oci
    and oci-archive, the full ``host/repository:tag`` or ``host/repository@digest`` for docker,
    or None. ``source_index`` is N from an ``@N`` suffix. ``registry`` is set for docker only.
    """

    transport: Transport
    text: str
    path: Path | None = None
    name: str | None = None
    source_index: int | None = None
    registry: RegistryReference | None = None

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
            f"image reference {text!r} names no transport; {_guess(text)}expected {SUPPORTED_FORMS}"
        )
    if transport_name == Transport.DOCKER_ARCHIVE.value:
        return _parse_docker_archive(text, rest)
    if transport_name == Transport.OCI.value:
        return _parse_oci(text, rest)
    if transport_name == Transport.OCI_ARCHIVE.value:
        return _parse_oci(text, rest, transport=Transport.OCI_ARCHIVE)
    if transport_name == Transport.DOCKER.value:
        return _parse_docker(text, rest)
    if transport_name == Transport.DOCKER_DAEMON.value:
        return _parse_docker_daemon(text, rest)
    raise InvalidReferenceError(
        f"image reference {text!r}: unknown transport {transport_name!r}; "
        f"{_guess(text)}expected {SUPPORTED_FORMS}"
    )


def _guess(text: str) -> str:
    """Suggest the references a user most likely meant by a text with no known transport.

    A prefix close to a transport name, such as ``docker-archve:``, is replaced by that name.
    Otherwise a text without a colon that ends in .tar is offered as a file for the archive
    transports, and any other text as a name for docker-daemon:. Only suggestions that parse
    are offered.
    """
    transport_name, colon, rest = text.partition(":")
    names = [transport.value for transport in Transport]
    close = difflib.get_close_matches(transport_name.lower(), names, n=1, cutoff=0.75)
    if colon and close:
        # docker:// keeps its slashes, so "dokcer:HOST/REPO" becomes "docker://HOST/REPO".
        slashes = "//" if close[0] == Transport.DOCKER.value and not rest.startswith("//") else ""
        suggestions = [f"{close[0]}:{slashes}{rest}"]
    elif not colon and text.endswith((".tar", ".tar.gz", ".tgz")):
        suggestions = [f"docker-archive:{text}", f"oci-archive:{text}"]
    else:
        suggestions = [f"docker-daemon:{text}"]
    valid = [suggestion for suggestion in suggestions if _parses(suggestion)]
    if not valid:
        return ""
    return f"did you mean {' or '.join(valid)}? "


def _parses(text: str) -> bool:
    try:
        parse_reference(text)
    except InvalidReferenceError:
        return False
    return True


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


def _parse_oci(text: str, rest: str, *, transport: Transport = Transport.OCI) -> ImageReference:
    path, _, inner = rest.partition(":")
    if not path:
        what = "layout folder" if transport is Transport.OCI else "archive path"
        raise _invalid(text, f"the {what} is empty")
    if not inner:
        return ImageReference(transport, text, Path(path))
    index = _source_index(inner)
    if index is not None:
        return ImageReference(transport, text, Path(path), source_index=index)
    try:
        return ImageReference(transport, text, Path(path), check_oci_ref(inner))
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None


def _parse_docker(text: str, rest: str) -> ImageReference:
    if not rest.startswith("//"):
        raise _invalid(text, "a registry reference starts with docker://")
    try:
        registry = parse_registry_name(rest[2:])
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None
    return ImageReference(Transport.DOCKER, text, name=str(registry), registry=registry)


def parse_registry_name(text: str) -> RegistryReference:
    """Parse ``[HOST/]REPO[:TAG]`` or ``[HOST/]REPO@DIGEST`` as Docker does.

    The first component is the registry host when it contains a dot or a colon or is
    ``localhost``. Otherwise the host is docker.io, where one-component names get the
    ``library/`` prefix. Raises ValueError if ``text`` is not a valid name, because callers
    word the error.
    """
    if not text:
        raise ValueError("the image name is empty")
    if len(text) > _MAX_NAME_LENGTH + 140:
        raise ValueError(f"the name is longer than {_MAX_NAME_LENGTH} characters")
    name, _, digest = text.partition("@")
    tag = None
    last_slash = name.rfind("/")
    last_colon = name.rfind(":")
    if last_colon > last_slash:
        name, tag = name[:last_colon], name[last_colon + 1 :]
    if digest and tag is not None:
        raise ValueError("give a tag or a digest, not both")
    if digest and not _DIGEST_RE.match(digest):
        raise ValueError(f"{digest!r} is not a valid digest; expected sha256:<64 hex digits>")
    if tag is not None and not _TAG_RE.match(tag):
        raise ValueError(f"{tag!r} is not a valid tag")
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repository = first, remainder
        if not _DOMAIN_RE.match(registry):
            raise ValueError(f"{registry!r} is not a valid registry host")
    else:
        registry, repository = DOCKER_HUB, name
    if registry in (DOCKER_HUB, "index.docker.io"):
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    if not _REPOSITORY_RE.match(repository) or len(repository) > _MAX_NAME_LENGTH:
        raise ValueError(f"{repository!r} is not a valid repository name")
    return RegistryReference(
        registry, repository, None if digest else (tag or "latest"), digest or None
    )


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


def check_source(text: str) -> ImageReference:
    """Parse a source reference and check that its file or folder exists, before any slow work.

    Raises InvalidReferenceError when the reference is malformed, and ImageNotFoundError with
    the message that reading the image would give when the archive or layout is missing. Other
    problems, such as a file that is not an image, show only when the image is read.
    """
    reference = parse_reference(text)
    if reference.path is None:
        return reference
    try:
        if reference.path.exists():
            return reference
    except OSError:
        # Reading the image reports a path that cannot be checked, such as one without search
        # permission, with the reason.
        return reference
    if reference.transport is Transport.OCI:
        raise ImageNotFoundError(f"{text}: no such folder; check the path of the OCI layout")
    kind = "docker archive" if reference.transport is Transport.DOCKER_ARCHIVE else "OCI archive"
    raise ImageNotFoundError(f"{text}: no such file; check the path of the {kind}")


def check_destination(text: str) -> ImageReference:
    """Parse a destination reference and check that its folder exists, before any slow work.

    Raises InvalidReferenceError naming the reference when it is malformed or when the folder
    that would hold the archive or layout does not exist.
    """
    reference = parse_reference(text)
    if reference.path is not None:
        check_output_path(reference.path, text, directory=reference.transport is Transport.OCI)
    return reference


def check_output_path(path: Path, label: str, *, directory: bool = False) -> None:
    """Check that ``path`` can be replaced by a new file (or, with ``directory``, a layout).

    An existing device, pipe or symlink such as /dev/stdout is rejected, because edgetrim writes
    through a temporary file that is renamed over the target and would replace it.
    """
    folder = path.absolute().parent
    if not folder.is_dir():
        raise InvalidReferenceError(
            f"{label}: the folder {folder} does not exist; create it or write elsewhere"
        )
    if not os.path.lexists(path):
        return
    wanted = path.is_dir() if directory else path.is_file()
    if path.is_symlink() or not wanted:
        kind = "an OCI layout folder" if directory else "a regular file"
        raise InvalidReferenceError(
            f"{label}: {path} exists and is not {kind}; write to a new path instead"
        )
