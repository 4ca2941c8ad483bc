"""Write an image into an OCI image layout folder."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgetrim.errors import DigestMismatchError, ImageFormatError, ImageWriteError
from edgetrim.image import mediatypes
from edgetrim.image.compression import Compression, sniff
from edgetrim.image.digest import Digest, VerifyingReader
from edgetrim.image.model import Descriptor, Image, Layer
from edgetrim.transports import _blobs
from edgetrim.transports._atomic import atomic_file, write_bytes, write_error
from edgetrim.transports._json import dump_json, expect_object, get_field, parse_descriptor
from edgetrim.transports._layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    REF_ANNOTATION,
    blob_path,
)
from edgetrim.transports._source import DirectorySource

logger = logging.getLogger(__name__)


def write_oci_layout(image: Image, path: Path, *, ref: str | None = None) -> Digest:
    """Write ``image`` into the OCI layout folder ``path`` and return its manifest digest.

    The manifest is an OCI one: the config gets the OCI config media type and each layer the
    OCI layer type for its blob's real compression (tar, tar+gzip or tar+zstd). Blobs are
    stored as given. ``ref`` becomes the ``org.opencontainers.image.ref.name`` annotation in
    index.json. If ``path`` already is a layout, the entry with the same ref is replaced and
    every other entry and blob is kept. Otherwise the layout is built in a temporary folder
    beside ``path`` and renamed into place, so a failed write leaves nothing there. The same
    image and ref always give the same bytes.
    """
    if path.exists() and not path.is_dir():
        raise ImageWriteError(f"{path}: is a file, but oci: writes a layout folder")
    if path.is_dir() and any(path.iterdir()):
        if not (path / INDEX_FILE).is_file():
            raise ImageWriteError(
                f"{path}: the folder is not empty and is not an OCI layout (no index.json); "
                "choose a new or empty folder"
            )
        return _write_into(path, image, ref, _read_index(path))
    return _write_new(path, image, ref)


def _write_new(path: Path, image: Image, ref: str | None) -> Digest:
    try:
        temp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        digest = _write_into(temp, image, ref, new_index())
        os.chmod(temp, 0o755)
        # rename(2) replaces an empty folder, so an empty ``path`` is no obstacle.
        os.replace(temp, path)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise write_error(path, exc) from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return digest


def _write_into(root: Path, image: Image, ref: str | None, index: dict[str, Any]) -> Digest:
    layers = [_write_layer(root, layer) for layer in image.layers]
    config = _write_small_blob(root, image.config.raw, mediatypes.OCI_CONFIG)
    descriptor = _write_small_blob(root, oci_manifest(config, layers), mediatypes.OCI_MANIFEST)
    if not (root / LAYOUT_FILE).is_file():
        write_bytes(root / LAYOUT_FILE, dump_json({"imageLayoutVersion": LAYOUT_VERSION}))
    write_bytes(root / INDEX_FILE, dump_json(add_to_index(index, descriptor, ref)))
    return descriptor.digest


def oci_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """Return the bytes of an OCI image manifest, the same for the same descriptors."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return dump_json(manifest)


def oci_layer_descriptor(layer: Layer, head: bytes | None) -> Descriptor:
    """Return a layer's OCI descriptor, typed by the compression its first bytes show.

    ``head`` is None for a foreign layer whose blob was left out; its media type then decides.
    Annotations (such as eStargz's) and URLs are kept.
    """
    foreign = _blobs.is_foreign(layer.media_type)
    kind = _compression_of_type(layer.media_type) if head is None else sniff(head)
    types = _blobs.OCI_NONDISTRIBUTABLE_TYPES if foreign else _blobs.OCI_LAYER_TYPES
    return Descriptor(
        types[kind],
        layer.digest,
        layer.size,
        annotations=dict(layer.descriptor.annotations),
        urls=layer.descriptor.urls,
    )


def _write_layer(root: Path, layer: Layer) -> Descriptor:
    """Store a layer blob unless an intact copy is there; return its OCI descriptor."""
    if layer.opener is None:
        # A foreign layer whose blob was left out: keep only its descriptor and URLs.
        return oci_layer_descriptor(layer, None)
    dest = root / blob_path(layer.digest)
    head = _intact_head(dest, layer)
    if head is None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(dest) as out:
            head = _blobs.copy_verified(layer, out)
    return oci_layer_descriptor(layer, head)


def _intact_head(dest: Path, layer: Layer) -> bytes | None:
    """Return the first bytes of an already stored blob, or None if it must be written."""
    if not dest.is_file():
        return None
    try:
        with open(dest, "rb") as stream:
            head = stream.read(_blobs.HEAD_SIZE)
            stream.seek(0)
            VerifyingReader(stream, layer.digest, name=str(dest), size=layer.size).drain()  # type: ignore[arg-type]
    except DigestMismatchError as exc:
        logger.warning("replacing corrupt blob %s: %s", dest, exc)
        return None
    return head


def _compression_of_type(media_type: str) -> Compression:
    if media_type.endswith("gzip"):
        return Compression.GZIP
    if media_type.endswith("zstd"):
        return Compression.ZSTD
    return Compression.NONE


def _write_small_blob(root: Path, data: bytes, media_type: str) -> Descriptor:
    digest = Digest.of_bytes(data)
    dest = root / blob_path(digest)
    if not (dest.is_file() and dest.read_bytes() == data):
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(dest, data)
    return Descriptor(media_type, digest, len(data))


def new_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}


def _read_index(root: Path) -> dict[str, Any]:
    """Read and check the index.json of an existing layout, which the write then extends."""
    source = DirectorySource(root)
    where = source.describe(INDEX_FILE)
    index = expect_object(source.read_json(INDEX_FILE), where=where)
    manifests = get_field(index, "manifests", list, where=where, default=[])
    for i, item in enumerate(manifests):
        parse_descriptor(item, where=f"{where} manifests[{i}]")
    if get_field(index, "schemaVersion", int, where=where, default=2) != 2:
        raise ImageFormatError(f"{where}: schemaVersion is not 2; edgetrim will not change it")
    return index


def add_to_index(index: dict[str, Any], descriptor: Descriptor, ref: str | None) -> dict[str, Any]:
    """Return ``index`` with an entry for ``descriptor`` in place of the one it replaces.

    With a ref, the entries carrying that ref are replaced. Without one, an unnamed entry for
    the same manifest is, so writing an image twice does not list it twice.
    """
    entry = descriptor.to_json()
    if ref is not None:
        entry["annotations"] = {REF_ANNOTATION: ref}
    manifests: list[Any] = []
    placed = False
    for item in index.get("manifests") or []:
        item_ref = (item.get("annotations") or {}).get(REF_ANNOTATION)
        if ref is not None:
            replaced = item_ref == ref
        else:
            replaced = item_ref is None and item.get("digest") == str(descriptor.digest)
        if not replaced:
            manifests.append(item)
        elif not placed:
            manifests.append(entry)
            placed = True
    if not placed:
        manifests.append(entry)
    return {**index, "manifests": manifests}
