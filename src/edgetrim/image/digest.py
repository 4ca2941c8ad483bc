"""Content digests and a reader that verifies a stream against one while it is read."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from edgetrim.errors import DigestMismatchError, ImageFormatError

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """An OCI content digest such as ``sha256:9f86...``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str, *, context: str = "digest") -> Digest:
        """Parse ``algorithm:hex``; raise ImageFormatError naming ``context`` if it is malformed."""
        match = _DIGEST_RE.match(text) if isinstance(text, str) else None
        if not match or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
            raise ImageFormatError(f"{context}: invalid digest {text!r}; expected sha256:<64 hex>")
        return cls(match.group(1), match.group(2))

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        """Compute the sha256 digest of ``data``."""
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def new_hash(self) -> hashlib._Hash:
        """Return an empty hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def check_digest(name: str, expected: Digest, actual_hex: str) -> None:
    """Raise DigestMismatchError naming ``name`` unless ``actual_hex`` is ``expected``'s hex."""
    if actual_hex != expected.hex:
        raise DigestMismatchError(
            f"{name}: content digest is {expected.algorithm}:{actual_hex}, expected "
            f"{expected}; the image is corrupt, fetch or export it again"
        )


class VerifyingReader(io.RawIOBase):
    """Pass bytes through from ``stream`` and check their digest and size at end of stream.

    ``name`` identifies the blob in the error. A size of None skips the size check, which is
    the case for diff IDs, whose uncompressed size no manifest records.
    """

    def __init__(self, stream: BinaryIO, expected: Digest, *, name: str, size: int | None = None):
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._expected = expected
        self._size = size
        self._name = name
        self._hash = expected.new_hash()
        self._count = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if not view:
            return 0
        if self._size is not None:
            # Read one byte past the recorded size so that a blob longer than it claims is caught.
            view = view[: max(self._size - self._count + 1, 0)]
        count = read_into(self._stream, view, self._readinto)
        if not count:
            self._check()
            return 0
        self._count += count
        if self._size is not None and self._count > self._size:
            raise DigestMismatchError(
                f"{self._name}: blob is larger than the {self._size} bytes its descriptor records"
            )
        self._hash.update(view[:count])
        return count

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._size is not None and self._count != self._size:
            raise DigestMismatchError(
                f"{self._name}: blob has {self._count} bytes but its descriptor records "
                f"{self._size}; the image is truncated or corrupt, fetch or export it again"
            )
        check_digest(self._name, self._expected, self._hash.hexdigest())

    def drain(self) -> None:
        """Read to the end so that the digest is checked even if the caller stopped early."""
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        self._stream.close()
        super().close()


def read_into(stream: Any, view: memoryview, readinto: Any = None) -> int:
    """Read once from ``stream`` into ``view`` and return the count; 0 means end of stream.

    Uses ``readinto`` (default: the stream's own) when there is one, so nothing is copied,
    and otherwise ``read`` and one copy.
    """
    readinto = readinto or getattr(stream, "readinto", None)
    if readinto is not None:
        return int(readinto(view))
    data = stream.read(len(view))
    view[: len(data)] = data
    return len(data)
