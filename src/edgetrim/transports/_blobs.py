"""Helpers that stream blobs: hashing, copying with verification and media types by content."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import zlib
from typing import BinaryIO

import zstandard

from edgetrim.errors import ImageFormatError
from edgetrim.image import mediatypes
from edgetrim.image.compression import Compression, decompress
from edgetrim.image.digest import Digest
from edgetrim.image.model import BlobOpener, Layer

CHUNK_SIZE = 1 << 20
# Enough bytes to tell gzip and zstd magic numbers apart from a plain tar.
HEAD_SIZE = 4

DOCKER_LAYER_TYPES = {
    Compression.NONE: mediatypes.DOCKER_LAYER,
    Compression.GZIP: mediatypes.DOCKER_LAYER_GZIP,
    # Docker's schema 2 has no zstd layer type; containerd and Docker 25+ use the OCI one.
    Compression.ZSTD: mediatypes.OCI_LAYER_ZSTD,
}
OCI_LAYER_TYPES = {
    Compression.NONE: mediatypes.OCI_LAYER,
    Compression.GZIP: mediatypes.OCI_LAYER_GZIP,
    Compression.ZSTD: mediatypes.OCI_LAYER_ZSTD,
}
OCI_NONDISTRIBUTABLE_TYPES = {
    Compression.NONE: "application/vnd.oci.image.layer.nondistributable.v1.tar",
    Compression.GZIP: mediatypes.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    Compression.ZSTD: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}
LAYER_TYPES = frozenset(
    {
        *DOCKER_LAYER_TYPES.values(),
        *OCI_LAYER_TYPES.values(),
        *OCI_NONDISTRIBUTABLE_TYPES.values(),
        mediatypes.DOCKER_FOREIGN_LAYER,
    }
)
FOREIGN_TYPES = frozenset({*OCI_NONDISTRIBUTABLE_TYPES.values(), mediatypes.DOCKER_FOREIGN_LAYER})


def is_foreign(media_type: str) -> bool:
    """True for a layer type whose blob registries and archives may leave out."""
    return media_type in FOREIGN_TYPES


def hash_stream(stream: BinaryIO) -> tuple[Digest, int]:
    """Return the sha256 digest and the length of everything left in ``stream``."""
    hasher = hashlib.sha256()
    count = 0
    while chunk := stream.read(CHUNK_SIZE):
        hasher.update(chunk)
        count += len(chunk)
    return Digest("sha256", hasher.hexdigest()), count


def hash_blob(opener: BlobOpener) -> Digest:
    """Return the sha256 digest of the stored bytes that ``opener`` returns."""
    with contextlib.closing(opener()) as stream:
        return hash_stream(stream)[0]


def hash_uncompressed(opener: BlobOpener, *, name: str) -> Digest:
    """Return the sha256 digest of a blob after decompressing it, which is its diff ID."""
    with contextlib.closing(decompress(opener(), name=name)) as stream:
        try:
            return hash_stream(stream)[0]
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise ImageFormatError(
                f"{name}: layer data is corrupt or truncated ({exc}); export the image again"
            ) from None


def read_head(opener: BlobOpener) -> bytes:
    """Return the first bytes of a blob, enough to sniff its compression."""
    with contextlib.closing(opener()) as stream:
        return stream.read(HEAD_SIZE)


def open_verified(layer: Layer) -> io.BufferedReader:
    """Open a layer's stored blob for copying, checked against its digest and size.

    The buffered reader returns full reads until the end of the blob. So for a short blob,
    ``tarfile.addfile`` gets the DigestMismatchError raised there, not its own "unexpected end
    of data" OSError.
    """
    return io.BufferedReader(layer.open_compressed(), CHUNK_SIZE)  # type: ignore[arg-type]


def copy_verified(layer: Layer, out: BinaryIO) -> bytes:
    """Copy a layer's stored blob to ``out``, verifying it, and return its first bytes."""
    head = b""
    with open_verified(layer) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            if len(head) < HEAD_SIZE:
                head += chunk[: HEAD_SIZE - len(head)]
            out.write(chunk)
    return head
