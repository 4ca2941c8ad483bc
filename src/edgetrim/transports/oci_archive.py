"""Read and write OCI archives: an OCI image layout packed in one tar file, as skopeo writes them.

Reading indexes the tar once and reads blobs at their offsets (see ``_source.TarSource``), so
nothing is extracted. An archive compressed as a whole with gzip or zstd is decompressed into
a temporary file first. Writing streams every blob straight into a new tar beside the
destination, which is renamed into place when complete. An existing archive is replaced, not
extended, as skopeo does.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from edgetrim.errors import ImageWriteError
from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, Layer, Platform
from edgetrim.transports import _blobs
from edgetrim.transports._atomic import atomic_file
from edgetrim.transports._json import dump_json
from edgetrim.transports._layout import INDEX_FILE, LAYOUT_FILE, LAYOUT_VERSION, blob_path
from edgetrim.transports._oci_write import (
    add_to_index,
    new_index,
    oci_layer_descriptor,
    oci_manifest,
)
from edgetrim.transports._source import open_archive_source
from edgetrim.transports.oci_layout import load_layout, reject_other_formats

__all__ = ["read_oci_archive", "write_oci_archive"]


@contextlib.contextmanager
def read_oci_archive(
    path: Path,
    *,
    ref: str | None = None,
    source_index: int | None = None,
    platform: Platform | None = None,
    display: str | None = None,
) -> Iterator[Image]:
    """Open the image that ``ref`` (or ``source_index``) selects in the OCI archive ``path``.

    Without either, the archive must hold one image, or one per platform, as in ``oci:``.
    """
    display = display or str(path)
    with contextlib.ExitStack() as stack:
        source = open_archive_source(path, display, stack, kind="OCI archive")
        reject_other_formats(source, archive=not path.is_dir())
        yield load_layout(source, ref=ref, source_index=source_index, platform=platform)


def write_oci_archive(image: Image, path: Path, *, ref: str | None = None) -> Digest:
    """Write ``image`` as an OCI archive at ``path`` and return its manifest digest.

    The layout inside is the one ``oci:`` writes: an OCI manifest, each layer typed by its
    real compression, and ``ref`` as the ``org.opencontainers.image.ref.name`` annotation. The
    tar has fixed header fields, so the same image and ref always give the same bytes.
    """
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a folder, but oci-archive: writes a tar file")
    with (
        atomic_file(path) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        _add_bytes(archive, LAYOUT_FILE, dump_json({"imageLayoutVersion": LAYOUT_VERSION}))
        _add_folder(archive, "blobs")
        _add_folder(archive, "blobs/sha256")
        written: set[Digest] = set()
        layers = [_add_layer(archive, layer, written) for layer in image.layers]
        config = _add_blob(archive, image.config.raw, mediatypes.OCI_CONFIG, written)
        manifest = _add_blob(
            archive, oci_manifest(config, layers), mediatypes.OCI_MANIFEST, written
        )
        _add_bytes(archive, INDEX_FILE, dump_json(add_to_index(new_index(), manifest, ref)))
    return manifest.digest


def _add_layer(archive: tarfile.TarFile, layer: Layer, written: set[Digest]) -> Descriptor:
    if layer.opener is None:
        # A foreign layer whose blob was left out keeps only its descriptor and URLs.
        return oci_layer_descriptor(layer, None)
    with _blobs.open_verified(layer) as verified:
        stream = _blobs.HeadRecorder(verified)  # type: ignore[arg-type]
        if layer.digest not in written:
            archive.addfile(_header(blob_path(layer.digest), layer.size), stream)  # type: ignore[arg-type]
            written.add(layer.digest)
        else:
            stream.read(_blobs.HEAD_SIZE)
        # Reading to the end is what checks the digest, also for the bytes addfile did not need.
        while stream.read(_blobs.CHUNK_SIZE):
            pass
    return oci_layer_descriptor(layer, stream.head)


def _add_blob(
    archive: tarfile.TarFile, data: bytes, media_type: str, written: set[Digest]
) -> Descriptor:
    digest = Digest.of_bytes(data)
    if digest not in written:
        _add_bytes(archive, blob_path(digest), data)
        written.add(digest)
    return Descriptor(media_type, digest, len(data))


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    archive.addfile(_header(name, len(data)), io.BytesIO(data))


def _add_folder(archive: tarfile.TarFile, name: str) -> None:
    archive.addfile(_header(name, 0, tarfile.DIRTYPE))


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
