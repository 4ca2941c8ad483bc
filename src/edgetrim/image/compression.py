"""Detect and undo the compression of layer blobs (gzip, zstd or none)."""

from __future__ import annotations

import enum
import gzip
from typing import Any, BinaryIO

import zstandard

from edgetrim.errors import ImageFormatError
from edgetrim.image.digest import read_into

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Compression(enum.Enum):
    """How a layer blob is compressed."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


def sniff(head: bytes) -> Compression:
    """Tell the compression from the first bytes of a blob.

    The media type is not trusted for this because Docker archives name every layer
    ``layer.tar`` whatever it holds, and some registries serve mislabelled blobs.
    """
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


class _PeekedStream:
    """A stream with its first bytes already read and kept for replay."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._rest.read(size - len(data))
            return data
        return self._rest.read(size)

    def readinto(self, buffer: memoryview) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return read_into(self._rest, buffer)

    def close(self) -> None:
        self._rest.close()


def decompress(stream: BinaryIO, *, name: str) -> BinaryIO:
    """Return a stream of the uncompressed bytes of ``stream``, whatever its compression."""
    return open_decompressed(stream, name=name)[0]


def open_decompressed(stream: BinaryIO, *, name: str) -> tuple[BinaryIO, Compression]:
    """Return a stream of the uncompressed bytes of ``stream`` and the compression it undoes."""
    head = stream.read(4)
    peeked: Any = _PeekedStream(head, stream)
    kind = sniff(head)
    if kind is Compression.GZIP:
        return gzip.GzipFile(fileobj=peeked, mode="rb"), kind  # type: ignore[return-value]
    if kind is Compression.ZSTD:
        try:
            decompressor = zstandard.ZstdDecompressor()
            reader: Any = decompressor.stream_reader(peeked, read_across_frames=True)
        except zstandard.ZstdError as exc:
            raise ImageFormatError(f"{name}: invalid zstd data: {exc}") from exc
        return reader, kind
    return peeked, kind
