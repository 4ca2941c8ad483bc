"""Read and write OCI image layouts: index.json, oci-layout and blobs/<algorithm>/<hex>.

Reading selects one manifest from index.json by its ``org.opencontainers.image.ref.name``
annotation, or takes the only image there. An image index or Docker manifest list found on
the way (nested ones too) is resolved to the manifest for the requested platform, by default
the host's. Every manifest, index and config blob is checked against its digest and size when
read. Docker schema 2 manifests and manifest lists are accepted wherever OCI ones are.
"""

from __future__ import annotations

import contextlib
import io
import platform as host
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetrim.errors import ImageFormatError, ImageNotFoundError, InvalidReferenceError
from edgetrim.image import mediatypes
from edgetrim.image.compression import Compression, sniff
from edgetrim.image.digest import Digest, VerifyingReader
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer, Platform
from edgetrim.transports import _blobs
from edgetrim.transports._json import (
    MAX_JSON_BYTES,
    expect_object,
    get_field,
    parse_descriptor,
    parse_json,
)
from edgetrim.transports._layout import (
    DOCKER_MANIFEST_FILE,
    DOCKER_REPOSITORIES_FILE,
    IMAGE_NAME_ANNOTATION,
    INDEX_FILE,
    LAYOUT_FILE,
    REF_ANNOTATION,
    blob_path,
)
from edgetrim.transports._oci_write import write_oci_layout
from edgetrim.transports._source import BlobSource, DirectorySource, TarSource
from edgetrim.transports.reference import normalize_docker_name

__all__ = [
    "INDEX_FILE",
    "choose_platform",
    "host_platform",
    "load_descriptor",
    "load_layout",
    "platform_matches",
    "read_oci_layout",
    "reject_other_formats",
    "write_oci_layout",
]

CONFIG_TYPES = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})
_NO_MANIFESTS = (
    "lists no manifests ('manifests' is empty, null or missing), so it contains no image to read"
)
# An index nested deeper than this is a loop or a crafted layout.
_MAX_INDEX_DEPTH = 8
# platform.machine() values and the Go architecture names that image platforms use.
_ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}


def host_platform() -> Platform:
    """Return the platform of this machine in image terms, such as linux/amd64."""
    machine = host.machine().lower()
    architecture, variant = _ARCHITECTURES.get(machine, (machine, ""))
    return Platform("linux", architecture, variant)


@contextlib.contextmanager
def read_oci_layout(
    path: Path,
    *,
    ref: str | None = None,
    source_index: int | None = None,
    platform: Platform | None = None,
    display: str | None = None,
) -> Iterator[Image]:
    """Open the image that ``ref`` (or ``source_index``) selects in the OCI layout at ``path``."""
    display = display or str(path)
    if not path.exists():
        raise ImageNotFoundError(f"{display}: no such folder; check the path of the OCI layout")
    if not path.is_dir():
        raise ImageFormatError(
            f"{display}: is a file, but oci: reads an OCI layout folder; {_advise_for_file(path)}"
        )
    source = DirectorySource(path, display=display)
    reject_other_formats(source, archive=False)
    yield load_layout(source, ref=ref, source_index=source_index, platform=platform)


def _advise_for_file(path: Path) -> str:
    """Return which transport reads the image file ``path``, judged from its tar members."""
    either = "read an OCI archive with oci-archive: or a docker save archive with docker-archive:"
    if not path.is_file():
        return either
    try:
        with open(path, "rb") as stream:
            compressed = sniff(stream.read(4)) is not Compression.NONE
        # A compressed archive would have to be decompressed to list its members, which
        # costs too much for advice in an error message.
        if compressed:
            return either
        members = TarSource(path)
    except (OSError, ImageFormatError):
        return either
    is_oci = members.exists(INDEX_FILE)
    is_docker = members.exists(DOCKER_MANIFEST_FILE) or members.exists(DOCKER_REPOSITORIES_FILE)
    if is_docker:
        # Docker 25 and later write both formats into one archive, and docker-archive: reads
        # those even when their index.json lists no manifests.
        return "the file is a docker save archive, so read it with docker-archive:"
    if is_oci:
        return "the file is an OCI archive, so read it with oci-archive:"
    return (
        "the file is a tar archive without index.json or manifest.json, so it is not an "
        "image archive"
    )


def reject_other_formats(source: BlobSource, *, archive: bool) -> None:
    """Raise ImageFormatError naming the right transport when ``source`` is not an OCI layout.

    ``archive`` is True for a tar file read by oci-archive:, so that the message speaks of an
    archive. A docker archive, or a folder it was extracted to, is sent to docker-archive:.
    """
    docker_files = [
        name for name in (DOCKER_MANIFEST_FILE, DOCKER_REPOSITORIES_FILE) if source.exists(name)
    ]
    if not source.exists(INDEX_FILE):
        if docker_files:
            kind, expected = ("a docker archive", "an OCI archive")
            if not archive:
                kind, expected = ("an extracted docker archive", "an OCI layout")
            raise ImageFormatError(
                f"{source.display}: {kind} ({docker_files[0]}, no index.json), not {expected}; "
                "read it with docker-archive:"
            )
        if archive:
            raise ImageFormatError(
                f"{source.display}: not an OCI archive because index.json is missing; pass a tar "
                "that skopeo, buildah or podman wrote to oci-archive:, or that "
                "docker buildx build --output type=oci wrote"
            )
        raise ImageFormatError(
            f"{source.display}: not an OCI layout because index.json is missing; "
            "pass the folder that skopeo, buildah or docker buildx wrote"
        )
    if docker_files and not _lists_manifests(source):
        raise ImageFormatError(
            f"{source.describe(INDEX_FILE)}: {_NO_MANIFESTS}. The docker {docker_files[0]} "
            "beside it may still describe the image, so read it with docker-archive:"
        )


def _lists_manifests(source: BlobSource) -> bool:
    """True unless index.json is a JSON object whose ``manifests`` is empty, null or missing.

    An index.json that is valid JSON but not an object counts as listing manifests, so that
    load_layout reports it.
    """
    index = source.read_json(INDEX_FILE)
    return not isinstance(index, dict) or bool(index.get("manifests"))


def load_layout(
    source: BlobSource,
    *,
    ref: str | None = None,
    docker_name: str | None = None,
    source_index: int | None = None,
    platform: Platform | None = None,
) -> Image:
    """Build the selected image of an OCI layout in a folder or in an archive.

    ``docker_name`` (``name:tag``) selects by the ``io.containerd.image.name`` annotation.
    """
    if not source.exists(INDEX_FILE):
        raise ImageFormatError(
            f"{source.display}: not an OCI layout because index.json is missing; "
            "pass the folder that skopeo, buildah or docker buildx wrote"
        )
    _check_layout_file(source)
    where = source.describe(INDEX_FILE)
    index = expect_object(source.read_json(INDEX_FILE), where=where)
    entries = _index_entries(index, where=where)
    want = platform or host_platform()
    chosen = _select_entry(
        entries, source.display, ref=ref, docker_name=docker_name, source_index=source_index
    )
    if chosen is None:
        chosen = choose_platform(entries, want, where=where)
    names = [chosen.annotations[REF_ANNOTATION]] if REF_ANNOTATION in chosen.annotations else []
    return load_descriptor(source, chosen, want, names=names)


def _check_layout_file(source: BlobSource) -> None:
    # Many tools omit oci-layout, so only a malformed one is an error.
    if source.exists(LAYOUT_FILE):
        where = source.describe(LAYOUT_FILE)
        layout = expect_object(source.read_json(LAYOUT_FILE), where=where)
        get_field(layout, "imageLayoutVersion", str, where=where)


def _index_entries(index: dict[str, Any], *, where: str) -> list[Descriptor]:
    manifests = get_field(index, "manifests", list, where=where, default=[])
    if not manifests:
        raise ImageFormatError(f"{where}: {_NO_MANIFESTS}")
    return [
        parse_descriptor(item, where=f"{where} manifests[{i}]") for i, item in enumerate(manifests)
    ]


def _select_entry(
    entries: list[Descriptor],
    display: str,
    *,
    ref: str | None,
    docker_name: str | None,
    source_index: int | None,
) -> Descriptor | None:
    """Return the top-level entry the reference selects, or None to choose by platform."""
    if source_index is not None:
        if source_index >= len(entries):
            raise ImageNotFoundError(
                f"{display}: no image @{source_index}, because index.json lists only @0 to "
                f"@{len(entries) - 1}: {_list_entries(entries)}"
            )
        return entries[source_index]
    if ref is not None:
        matches = [e for e in entries if e.annotations.get(REF_ANNOTATION) == ref]
        return _only_match(matches, display, f"ref {ref!r}", entries)
    if docker_name is not None:
        matches = [e for e in entries if _docker_name_of(e) == docker_name]
        return _only_match(matches, display, f"image name {docker_name}", entries)
    distinct = {entry.digest: entry for entry in entries}
    if len(distinct) == 1:
        return entries[0]
    # A flat index.json that lists one manifest per platform and names none of them is a
    # multi-platform image, so the platform chooses.
    if all(e.platform and REF_ANNOTATION not in e.annotations for e in entries):
        return None
    raise InvalidReferenceError(
        f"{display}: the layout contains {len(distinct)} images, so the reference must choose "
        f"one with :REF or :@INDEX; index.json lists them as {_list_entries(entries)}"
    )


def _only_match(
    matches: list[Descriptor], display: str, selector: str, entries: list[Descriptor]
) -> Descriptor:
    digests = {match.digest for match in matches}
    if not digests:
        raise ImageNotFoundError(
            f"{display}: no image with {selector}; index.json lists {_list_entries(entries)}"
        )
    if len(digests) > 1:
        listed = ", ".join(str(digest) for digest in sorted(digests))
        raise ImageFormatError(
            f"{display}: {len(digests)} different manifests carry {selector} ({listed}); "
            "select one with :@INDEX"
        )
    return matches[0]


def _docker_name_of(entry: Descriptor) -> str | None:
    name = entry.annotations.get(IMAGE_NAME_ANNOTATION)
    if name is None:
        return None
    try:
        return normalize_docker_name(name)
    except ValueError:
        return None


def _list_entries(entries: list[Descriptor]) -> str:
    """Describe the entries of index.json by @INDEX, one item per distinct manifest.

    Several refs often name one manifest (``3``, ``3.18`` and ``latest``). Their entries
    are joined with "or" into one item, so that the number of items is the number of images.
    """
    images: dict[Digest, list[str]] = {}
    for i, entry in enumerate(entries):
        label = entry.annotations.get(REF_ANNOTATION) or str(entry.platform or "") or "no ref"
        images.setdefault(entry.digest, []).append(f"@{i} ({label})")
    return ", ".join(" or ".join(choices) for choices in images.values())


def choose_platform(children: list[Descriptor], want: Platform, *, where: str) -> Descriptor:
    """Return the first child for ``want``, else the first child that names no platform."""
    for child in children:
        if child.platform is not None and platform_matches(child.platform, want):
            return child
    for child in children:
        if child.platform is None:
            return child
    available = ", ".join(str(child.platform) for child in children)
    raise ImageNotFoundError(
        f"{where}: no image for platform {want}; the index has {available}; "
        "choose one of those platforms"
    )


def platform_matches(have: Platform, want: Platform) -> bool:
    """True if an image for ``have`` runs on ``want``.

    Variants are compared only when ``want`` names one.
    """
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    return not want.variant or _variant(have) == _variant(want)


def _variant(platform: Platform) -> str:
    # arm64 images rarely state their only variant.
    if platform.architecture == "arm64" and platform.variant in ("", "v8"):
        return "v8"
    return platform.variant


def load_descriptor(
    source: BlobSource, descriptor: Descriptor, want: Platform, *, names: list[str], depth: int = 0
) -> Image:
    """Build the image that a manifest or index descriptor leads to, for platform ``want``.

    An index (nested ones too, up to a fixed depth) is resolved to the child for ``want``.
    """
    raw, document = _read_json_blob(source, descriptor, role="manifest")
    label = source.describe(source.manifest_name(descriptor.digest))
    media_type = _document_type(document, descriptor, where=label)
    if media_type in mediatypes.INDEX_TYPES:
        if depth >= _MAX_INDEX_DEPTH:
            raise ImageFormatError(f"{label}: indexes nest more than {_MAX_INDEX_DEPTH} deep")
        child = choose_platform(_index_entries(document, where=label), want, where=label)
        return load_descriptor(source, child, want, names=names, depth=depth + 1)
    return _image_from_manifest(source, raw, document, names=names, where=label)


def _document_type(document: dict[str, Any], descriptor: Descriptor, *, where: str) -> str:
    """Return the media type of a manifest or index blob.

    The blob's own mediaType wins over the descriptor's, because some layouts list a Docker
    manifest under an OCI type. With neither known, schema version 2 and the fields decide,
    since the OCI spec lets both documents omit mediaType.
    """
    own = get_field(document, "mediaType", str, where=where, default="")
    for candidate in (own, descriptor.media_type):
        if candidate in mediatypes.INDEX_TYPES or candidate in mediatypes.MANIFEST_TYPES:
            return candidate
    if document.get("schemaVersion") == 1:
        raise ImageFormatError(
            f"{where}: Docker schema 1 manifests are not supported; convert the image with "
            "skopeo copy --format v2s2"
        )
    if document.get("schemaVersion") == 2 and "manifests" in document:
        return mediatypes.OCI_INDEX
    if document.get("schemaVersion") == 2 and "config" in document:
        return mediatypes.OCI_MANIFEST
    raise ImageFormatError(
        f"{where}: media type {own or descriptor.media_type!r} is neither an image manifest "
        "nor an index"
    )


def _image_from_manifest(
    source: BlobSource, raw: bytes, manifest: dict[str, Any], *, names: list[str], where: str
) -> Image:
    config_descriptor = parse_descriptor(
        get_field(manifest, "config", dict, where=where), where=f"{where} config"
    )
    if config_descriptor.media_type not in CONFIG_TYPES:
        raise ImageFormatError(
            f"{where}: config media type {config_descriptor.media_type!r} is not a container "
            "image config, so this manifest describes an artifact (a Helm chart, a signature), "
            "not an image"
        )
    config_raw, _ = _read_blob(source, config_descriptor, role="config")
    config = ImageConfig(config_raw, name=_blob_label(source, config_descriptor.digest))
    layer_items = get_field(manifest, "layers", list, where=where)
    descriptors = [
        parse_descriptor(item, where=f"{where} layers[{i}]") for i, item in enumerate(layer_items)
    ]
    if len(descriptors) != len(config.diff_ids):
        raise ImageFormatError(
            f"{where}: manifest lists {len(descriptors)} layers but the config lists "
            f"{len(config.diff_ids)} diff IDs; the image is corrupt"
        )
    layers = [
        _layer(source, descriptor, diff_id, where=f"{where} layers[{i}]")
        for i, (descriptor, diff_id) in enumerate(zip(descriptors, config.diff_ids, strict=True))
    ]
    return Image(config, layers, names=names, manifest_raw=raw, source=source.display)


def _layer(source: BlobSource, descriptor: Descriptor, diff_id: Digest, *, where: str) -> Layer:
    if descriptor.media_type not in _blobs.LAYER_TYPES:
        raise ImageFormatError(
            f"{where}: layer media type {descriptor.media_type!r} is not a container image layer"
        )
    name = blob_path(descriptor.digest)
    label = _blob_label(source, descriptor.digest)
    if source.exists(name):
        return Layer(
            descriptor,
            diff_id,
            source.opener(name),
            name=label,
            stored=source.stored_range(name),
        )
    if _blobs.is_foreign(descriptor.media_type) or descriptor.urls:
        return Layer(descriptor, diff_id, None, name=label)
    raise ImageFormatError(
        f"{label}: layer blob is missing from the layout; copy the image into it again"
    )


def _read_json_blob(
    source: BlobSource, descriptor: Descriptor, *, role: str
) -> tuple[bytes, dict[str, Any]]:
    raw, label = _read_blob(source, descriptor, role=role)
    return raw, expect_object(parse_json(raw, where=label), where=label)


def _read_blob(source: BlobSource, descriptor: Descriptor, *, role: str) -> tuple[bytes, str]:
    """Read a small blob, verified against its descriptor's digest and size."""
    name = (
        source.manifest_name(descriptor.digest)
        if role == "manifest"
        else blob_path(descriptor.digest)
    )
    label = source.describe(name)
    if not source.exists(name):
        raise ImageFormatError(
            f"{label}: {role} blob is missing from the layout; copy the image into it again"
        )
    if descriptor.size > MAX_JSON_BYTES:
        raise ImageFormatError(
            f"{label}: the descriptor records {descriptor.size} bytes for a {role}, more than "
            f"the {MAX_JSON_BYTES} bytes edgetrim reads; the layout is corrupt"
        )
    raw = source.read_bytes(name, limit=MAX_JSON_BYTES)
    VerifyingReader(io.BytesIO(raw), descriptor.digest, name=label, size=descriptor.size).drain()  # type: ignore[arg-type]
    return raw, label


def _blob_label(source: BlobSource, digest: Digest) -> str:
    return source.describe(blob_path(digest))
