"""Helpers that stream blobs: hashing, copying with verification and media types by content."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import zlib
from typing import BinaryIO

import zstandard

from edgetrim.errors import ImageFormatError, UnsafeLayerError
from edgetrim.fs.limits import LAYER_SIZE_VARIABLE, LayerLimits
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


def hash_stream(stream: BinaryIO, *, limit: int | None = None) -> tuple[Digest, int]:
    """Return the sha256 digest and the length of everything left in ``stream``.

    Past ``limit`` bytes, stop and raise ValueError.
    """
    hasher = hashlib.sha256()
    count = 0
    while chunk := stream.read(CHUNK_SIZE):
        hasher.update(chunk)
        count += len(chunk)
        if limit is not None and count > limit:
            raise ValueError(f"more than {limit} bytes")
    return Digest("sha256", hasher.hexdigest()), count


def hash_blob(opener: BlobOpener) -> Digest:
    """Return the sha256 digest of the stored bytes that ``opener`` returns."""
    with contextlib.closing(opener()) as stream:
        return hash_stream(stream)[0]


def hash_uncompressed(opener: BlobOpener, *, name: str) -> Digest:
    """Return the sha256 digest of a blob after decompressing it, which is its diff ID."""
    limit = LayerLimits.from_environment().max_bytes
    # GzipFile.close() leaves the stream it reads open, so the raw blob is closed apart.
    with (
        contextlib.closing(opener()) as raw,
        contextlib.closing(decompress(raw, name=name)) as stream,
    ):
        try:
            return hash_stream(stream, limit=limit)[0]
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise ImageFormatError(
                f"{name}: layer data is corrupt or truncated ({exc}); export the image again"
            ) from None
        except ValueError:
            raise UnsafeLayerError(
                f"{name}: the layer decompresses to more than {limit} bytes, the limit "
                f"{LAYER_SIZE_VARIABLE} sets; it may be a decompression bomb, or raise the "
                "limit if the image is genuine"
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


class HeadRecorder:
    """A read-only stream that passes ``stream`` through and keeps its first bytes."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.head = b""

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if len(self.head) < HEAD_SIZE:
            self.head += data[: HEAD_SIZE - len(self.head)]
        return data

    def close(self) -> None:
        self._stream.close()


def copy_verified(layer: Layer, out: BinaryIO) -> bytes:
    """Copy a layer's stored blob to ``out``, verifying it, and return its first bytes."""
    head = b""
    with open_verified(layer) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            if len(head) < HEAD_SIZE:
                head += chunk[: HEAD_SIZE - len(head)]
            out.write(chunk)
    return head
