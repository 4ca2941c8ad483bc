"""Read and write docker archives, the tar files of ``docker save`` and ``docker load``.

Reading accepts these layouts:

- ``manifest.json`` with ``Config``, ``RepoTags`` and ``Layers`` (Docker 1.10 and later, and
  go-containerregistry's tarball format with ``sha256:<hex>`` configs and ``.tar.gz`` layers).
- The Docker 25+ layout, which adds an OCI layout beside ``manifest.json``. Both views are
  read, and the one that agrees with the config's diff IDs is used: ``manifest.json`` when
  both do. So it loads when index.json lists ``"manifests": null`` or an OCI manifest without
  layers, and also when manifest.json is the broken half.
- The layout before Docker 1.10, with only ``repositories`` and ``<id>/json``.
- An OCI image layout packed in a tar with no ``manifest.json``.
- Any of these compressed as a whole with gzip or zstd, or extracted into a folder.

Docker archives record no digest for stored layer blobs. An uncompressed layer's blob digest
is its diff ID, which every read verifies. A compressed layer is hashed once when the archive
is opened.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetrim.errors import (
    ImageFormatError,
    ImageNotFoundError,
    ImageWriteError,
    InvalidReferenceError,
)
from edgetrim.image.compression import Compression, sniff
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer, Platform
from edgetrim.transports import _blobs, _docker_legacy, oci_layout
from edgetrim.transports._atomic import atomic_file
from edgetrim.transports._json import (
    dump_json,
    expect_object,
    get_field,
    get_str_list,
    parse_descriptor,
)
from edgetrim.transports._source import BlobSource, open_archive_source
from edgetrim.transports.reference import normalize_docker_name

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"


@dataclass
class _Entry:
    """One image of manifest.json."""

    config: str
    layers: list[str]
    repo_tags: list[str]
    layer_sources: dict[str, Descriptor] = field(default_factory=dict)


@contextlib.contextmanager
def read_docker_archive(
    path: Path,
    *,
    name: str | None = None,
    source_index: int | None = None,
    platform: Platform | None = None,
    display: str | None = None,
) -> Iterator[Image]:
    """Open the image in the docker archive at ``path``, a tar file or an extracted folder.

    ``name`` (``name:tag``) or ``source_index`` selects an image of a multi-image archive.
    ``platform`` is used only for an OCI layout inside the archive, to choose from an index.
    ``display`` names the archive in errors. A compressed archive is decompressed into a
    temporary file, which is deleted when the block exits.
    """
    display = display or str(path)
    with contextlib.ExitStack() as stack:
        source = _open_source(path, display, stack)
        yield load_archive(source, name=name, source_index=source_index, platform=platform)


def load_archive(
    source: BlobSource,
    *,
    name: str | None = None,
    source_index: int | None = None,
    platform: Platform | None = None,
) -> Image:
    """Build the selected image from an opened archive, whichever layout it uses."""
    if source.exists(MANIFEST_FILE) and source.exists(oci_layout.INDEX_FILE):
        return _load_dual(source, name=name, source_index=source_index, platform=platform)
    if source.exists(MANIFEST_FILE):
        return _load_from_manifest(source, name=name, source_index=source_index)
    if source.exists(_docker_legacy.REPOSITORIES_FILE):
        return _docker_legacy.load_legacy(source, name=name, source_index=source_index)
    if source.exists(oci_layout.INDEX_FILE):
        return oci_layout.load_layout(
            source, docker_name=name, source_index=source_index, platform=platform
        )
    raise ImageFormatError(
        f"{source.display}: neither a docker archive (no manifest.json or repositories) nor "
        "an OCI layout (no index.json); pass an archive written by docker save or skopeo"
    )


def _load_dual(
    source: BlobSource, *, name: str | None, source_index: int | None, platform: Platform | None
) -> Image:
    """Read a Docker 25+ archive through whichever of its two views matches its config.

    Docker 25 and 26 wrote archives whose index.json is ``"manifests": null`` or whose OCI
    manifest lists no layers, and a hand-edited archive may have a stale manifest.json. A
    view agrees when it lists one layer per diff ID and every uncompressed layer's blob
    digest is that diff ID (checked from names and descriptors, before any layer is read).
    """
    try:
        image = _load_from_manifest(source, name=name, source_index=source_index)
        problem = _disagreement(image)
    except (ImageFormatError, ImageNotFoundError) as exc:
        first_error: ImageFormatError | ImageNotFoundError | None = exc
        problem = str(exc)
    else:
        first_error = None
        if problem is None:
            return image
    try:
        oci_image = oci_layout.load_layout(
            source, docker_name=name, source_index=source_index, platform=platform
        )
        oci_problem = _disagreement(oci_image)
    except (ImageFormatError, ImageNotFoundError, InvalidReferenceError) as exc:
        oci_problem = str(exc)
    if oci_problem is None:
        logger.warning(
            "%s: manifest.json does not match the image config (%s); reading the OCI "
            "layout in index.json instead",
            source.display,
            problem,
        )
        return oci_image
    reason = f"{problem}; the OCI layout beside it does not match either: {oci_problem}"
    if isinstance(first_error, ImageNotFoundError):
        raise ImageNotFoundError(reason) from None
    raise ImageFormatError(f"{source.display}: {reason}; export the image again") from None


def _disagreement(image: Image) -> str | None:
    """Say why an image's layers contradict its config's diff IDs, or return None."""
    uncompressed = (
        _blobs.DOCKER_LAYER_TYPES[Compression.NONE],
        _blobs.OCI_LAYER_TYPES[Compression.NONE],
    )
    for index, layer in enumerate(image.layers):
        if layer.media_type in uncompressed and layer.digest != layer.diff_id:
            return (
                f"layer {index} ({layer.label}) is uncompressed with digest {layer.digest}, "
                f"but the config records diff ID {layer.diff_id} for it"
            )
    return None


def _blob_name_digest(path: str) -> Digest | None:
    """Return the digest in a ``blobs/sha256/<hex>`` member name, which names a blob by it."""
    folder, _, hex_digest = path.rpartition("/")
    if folder.lstrip("./") != "blobs/sha256":
        return None
    try:
        return Digest.parse(f"sha256:{hex_digest}")
    except ImageFormatError:
        return None


def _open_source(path: Path, display: str, stack: contextlib.ExitStack) -> BlobSource:
    return open_archive_source(path, display, stack, kind="docker archive")


def _load_from_manifest(source: BlobSource, *, name: str | None, source_index: int | None) -> Image:
    where = source.describe(MANIFEST_FILE)
    document = source.read_json(MANIFEST_FILE)
    if not isinstance(document, list):
        kind = "null" if document is None else type(document).__name__
        raise ImageFormatError(
            f"{where}: expected a list of images, found {kind}; the archive is corrupt, "
            "export it again"
        )
    if not document:
        raise ImageFormatError(f"{where}: lists no images; export the image again")
    entries = [_parse_entry(item, where=f"{where} [{i}]") for i, item in enumerate(document)]
    entry = _select_entry(entries, source.display, name=name, source_index=source_index)
    config = ImageConfig(source.read_bytes(entry.config), name=source.describe(entry.config))
    if len(config.diff_ids) != len(entry.layers):
        raise ImageFormatError(
            f"{source.describe(entry.config)}: config lists {len(config.diff_ids)} diff IDs "
            f"but manifest.json lists {len(entry.layers)} layers; the archive is corrupt"
        )
    layers = [
        _load_layer(source, layer_path, diff_id, entry.layer_sources)
        for layer_path, diff_id in zip(entry.layers, config.diff_ids, strict=True)
    ]
    return Image(config, layers, names=list(entry.repo_tags), source=source.display)


def _parse_entry(item: Any, *, where: str) -> _Entry:
    obj = expect_object(item, where=where)
    config = get_field(obj, "Config", str, where=where)
    if not config:
        raise ImageFormatError(f"{where}: 'Config' is empty; the archive is corrupt")
    sources = get_field(obj, "LayerSources", dict, where=where, default={})
    layer_sources = {
        diff_id: parse_descriptor(value, where=f"{where} LayerSources[{diff_id}]")
        for diff_id, value in sources.items()
    }
    return _Entry(
        config=config,
        layers=get_str_list(obj, "Layers", where=where),
        repo_tags=get_str_list(obj, "RepoTags", where=where),
        layer_sources=layer_sources,
    )


def _select_entry(
    entries: list[_Entry], display: str, *, name: str | None, source_index: int | None
) -> _Entry:
    if source_index is not None:
        if source_index >= len(entries):
            raise ImageNotFoundError(
                f"{display}: no image @{source_index}; the archive contains {len(entries)} "
                f"image(s): {_list_entries(entries)}"
            )
        return entries[source_index]
    if name is not None:
        for entry in entries:
            if name in {_normalize_tag(tag) for tag in entry.repo_tags}:
                return entry
        raise ImageNotFoundError(
            f"{display}: no image named {name}; the archive contains {_list_entries(entries)}"
        )
    if len(entries) == 1:
        return entries[0]
    raise InvalidReferenceError(
        f"{display}: the archive contains {len(entries)} images, so the reference must choose "
        f"one with :NAME:TAG or :@INDEX: {_list_entries(entries)}"
    )


def _list_entries(entries: list[_Entry]) -> str:
    described = []
    for i, entry in enumerate(entries):
        tags = ", ".join(entry.repo_tags) or "untagged"
        described.append(f"@{i} ({tags})")
    return "; ".join(described)


def _normalize_tag(tag: str) -> str:
    try:
        return normalize_docker_name(tag)
    except ValueError:
        return tag


def _load_layer(
    source: BlobSource, path: str, diff_id: Digest, layer_sources: dict[str, Descriptor]
) -> Layer:
    """Describe one stored layer; its blob digest is its diff ID unless it is compressed."""
    label = source.describe(path)
    claimed = layer_sources.get(str(diff_id))
    if not source.exists(path):
        if claimed is not None and (_blobs.is_foreign(claimed.media_type) or claimed.urls):
            return Layer(claimed, diff_id, None, name=label)
        raise ImageFormatError(
            f"{label}: layer file is missing from the archive; export the image again"
        )
    opener = source.opener(path)
    size = source.size(path)
    kind = sniff(_blobs.read_head(opener))
    # Docker 25+ names each blob by its digest, which every read verifies. In older archives
    # an uncompressed layer's digest is its diff ID, and a compressed layer is hashed here.
    digest = _blob_name_digest(path)
    if digest is None:
        digest = diff_id if kind is Compression.NONE else _blobs.hash_blob(opener)
    descriptor = Descriptor(_blobs.DOCKER_LAYER_TYPES[kind], digest, size)
    # LayerSources may describe the layer as a registry served it, not as stored here, so it
    # is used only when it matches the stored blob (for the media type and URLs).
    if claimed is not None and claimed.digest == digest and claimed.size == size:
        descriptor = claimed
    return Layer(descriptor, diff_id, opener, name=label, stored=source.stored_range(path))


def write_docker_archive(image: Image, path: Path, *, repo_tags: Sequence[str] = ()) -> Digest:
    """Write ``image`` as a ``docker save`` archive at ``path`` and return its config digest.

    Docker archives hold no manifest, so the config digest, which Docker uses as the image
    ID, is returned in its place. Each layer blob is stored as given, compressed or not, in
    ``<diff ID hex>/layer.tar`` and verified while it is copied. ``repo_tags`` are ``name:tag``
    strings. The same image and tags always give the same bytes: fixed tar header fields,
    sorted JSON keys. The archive is written to a temporary file beside ``path`` and renamed
    into place, so a failed write leaves ``path`` as it was.
    """
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a folder, but docker-archive: writes a tar file")
    with (
        atomic_file(path) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        layer_paths = _add_layers(archive, image.layers)
        config_name = f"{image.config.digest.hex}.json"
        _add_bytes(archive, config_name, image.config.raw)
        entry: dict[str, Any] = {
            "Config": config_name,
            "RepoTags": list(repo_tags),
            "Layers": layer_paths,
        }
        foreign = {
            str(layer.diff_id): layer.descriptor.to_json()
            for layer in image.layers
            if _blobs.is_foreign(layer.media_type) or layer.descriptor.urls
        }
        if foreign:
            entry["LayerSources"] = foreign
        _add_bytes(archive, MANIFEST_FILE, dump_json([entry]))
        if repo_tags and image.layers:
            top = image.layers[-1].diff_id.hex
            _add_bytes(archive, "repositories", dump_json(_repositories(repo_tags, top)))
    return image.config.digest


def _add_layers(archive: tarfile.TarFile, layers: list[Layer]) -> list[str]:
    """Add each distinct layer once and return the member path of every layer in order."""
    paths = []
    for layer in layers:
        folder = layer.diff_id.hex
        member = f"{folder}/layer.tar"
        if member not in paths:
            archive.addfile(_header(folder, 0, tarfile.DIRTYPE))
            with _blobs.open_verified(layer) as stream:
                archive.addfile(_header(member, layer.size), stream)
                stream.read()  # reach the end, where the digest is checked
        paths.append(member)
    return paths


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    archive.addfile(_header(name, len(data)), io.BytesIO(data))


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _repositories(repo_tags: Sequence[str], top_layer: str) -> dict[str, dict[str, str]]:
    """Map repository to tag to top layer folder, as the legacy ``repositories`` file does."""
    repositories: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        repository, _, tag = repo_tag.rpartition(":")
        repositories.setdefault(repository, {})[tag] = top_layer
    return repositories
