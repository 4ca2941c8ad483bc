"""Files of a stored image, whether it is a folder or a tar archive.

A reader names files by their slash-separated path inside the image (``manifest.json``,
``blobs/sha256/<hex>``). :class:`TarSource` indexes the archive once and then reads members
at their offsets through separate file handles, so memory does not grow with blob sizes and
several layers can be open at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from edgetrim.errors import ImageFormatError, ImageNotFoundError, UnsafeLayerError
from edgetrim.fs.limits import ARCHIVE_SIZE_VARIABLE, LayerLimits
from edgetrim.image.compression import Compression, decompress, sniff
from edgetrim.image.digest import Digest
from edgetrim.image.model import BlobOpener, StoredRange
from edgetrim.transports._json import MAX_JSON_BYTES, parse_json
from edgetrim.transports._layout import blob_path

logger = logging.getLogger(__name__)

_CHUNK_SIZE = 1 << 20

# docker save stores a layer shared by two images once and links the second path to it. A
# longer chain of links than this is a loop or a crafted archive.
_MAX_LINK_HOPS = 16


class BlobSource:
    """Read-only access to the files of a stored image by their path inside it."""

    display: str

    def describe(self, name: str) -> str:
        """Return how error messages name the file ``name`` of this image."""
        return f"{self.display} ({name})"

    def manifest_name(self, digest: Digest) -> str:
        """Return the name under which the manifest or index with ``digest`` is read.

        In a layout that is its blob; a registry serves manifests apart from blobs.
        """
        return blob_path(digest)

    def exists(self, name: str) -> bool:
        """True when ``name`` is a regular file, after following links inside the image."""
        raise NotImplementedError

    def size(self, name: str) -> int:
        """Return the size in bytes of the file ``name``."""
        raise NotImplementedError

    def opener(self, name: str) -> BlobOpener:
        """Return a function that opens ``name`` for reading; raise if it does not exist."""
        raise NotImplementedError

    def stored_range(self, name: str) -> StoredRange | None:
        """Return where the bytes of the regular file ``name`` lie in a local file, if they do."""
        return None

    def read_bytes(self, name: str, *, limit: int = MAX_JSON_BYTES) -> bytes:
        """Read a whole small file, raising ImageFormatError if it is missing or over ``limit``."""
        if not self.exists(name):
            raise ImageFormatError(f"{self.describe(name)}: file is missing from the image")
        size = self.size(name)
        if size > limit:
            raise ImageFormatError(
                f"{self.describe(name)}: file has {size} bytes, more than the {limit} bytes "
                "edgetrim reads for a JSON document; the image is corrupt or not an image"
            )
        with self.opener(name)() as stream:
            return stream.read(limit + 1)

    def read_json(self, name: str) -> Any:
        """Read and parse the JSON file ``name``."""
        return parse_json(self.read_bytes(name), where=self.describe(name))


class DirectorySource(BlobSource):
    """The files of an image stored as a folder (an OCI layout or an extracted archive)."""

    def __init__(self, root: Path, *, display: str | None = None):
        self.root = root
        self.display = display or str(root)
        self._real_root = os.path.realpath(root)

    def _resolve(self, name: str) -> str | None:
        real = os.path.realpath(os.path.join(self._real_root, name))
        if os.path.commonpath([real, self._real_root]) != self._real_root:
            raise ImageFormatError(
                f"{self.describe(name)}: path leads outside {self.display}, so it is not read; "
                "the image is corrupt or crafted"
            )
        return real if os.path.isfile(real) else None

    def exists(self, name: str) -> bool:
        return self._resolve(name) is not None

    def size(self, name: str) -> int:
        real = self._resolve(name)
        if real is None:
            raise ImageFormatError(f"{self.describe(name)}: file is missing from the image")
        return os.stat(real).st_size

    def opener(self, name: str) -> BlobOpener:
        real = self._resolve(name)
        if real is None:
            raise ImageFormatError(f"{self.describe(name)}: file is missing from the image")
        return lambda: open(real, "rb")  # noqa: SIM115 - the caller closes the stream

    def stored_range(self, name: str) -> StoredRange | None:
        real = self._resolve(name)
        return None if real is None else StoredRange(real, 0, os.stat(real).st_size)


class TarSource(BlobSource):
    """The files of an image stored as an uncompressed tar archive.

    Member names are normalized (``./a`` and ``a`` are the same file). Symbolic and hard
    links between members are followed, which is how ``docker save`` stores a layer that
    two images share.
    """

    def __init__(self, path: Path, *, display: str | None = None):
        self.path = path
        self.display = display or str(path)
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, mode="r:") as archive:
                for info in archive:
                    self._members[_normalize(info.name)] = info
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageFormatError(
                f"{self.display}: not a readable tar archive ({exc}); "
                "pass an archive written by docker save or skopeo"
            ) from None

    @property
    def names(self) -> list[str]:
        """The normalized names of all members, in archive order."""
        return list(self._members)

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        current = _normalize(name)
        for _ in range(_MAX_LINK_HOPS):
            info = self._members.get(current)
            if info is None:
                return None
            if info.issym():
                target = info.linkname
                if not target.startswith("/"):
                    target = posixpath.join(posixpath.dirname(current), target)
                current = _normalize(target)
            elif info.islnk():
                current = _normalize(info.linkname)
            elif info.isreg():
                return info
            else:
                return None
            if current == ".." or current.startswith("../"):
                return None
        raise ImageFormatError(
            f"{self.describe(name)}: more than {_MAX_LINK_HOPS} links in a row inside the "
            "archive; the archive is corrupt"
        )

    def _regular(self, name: str) -> tarfile.TarInfo:
        info = self._resolve(name)
        if info is None:
            raise ImageFormatError(f"{self.describe(name)}: file is missing from the archive")
        if info.sparse is not None:
            raise ImageFormatError(
                f"{self.describe(name)}: sparse tar members are not supported; "
                "write the archive again without --sparse"
            )
        return info

    def exists(self, name: str) -> bool:
        return self._resolve(name) is not None

    def size(self, name: str) -> int:
        return self._regular(name).size

    def opener(self, name: str) -> BlobOpener:
        info = self._regular(name)
        path, offset, size = self.path, info.offset_data, info.size
        return lambda: _MemberReader(path, offset, size)  # type: ignore[return-value]

    def stored_range(self, name: str) -> StoredRange | None:
        info = self._regular(name)
        return StoredRange(str(self.path), info.offset_data, info.size)


class _MemberReader:
    """A read-only stream over ``size`` bytes at ``offset`` of a file, with its own handle."""

    def __init__(self, path: Path, offset: int, size: int):
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._file.seek(offset)
        self._left = size

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._left:
            size = self._left
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Read into ``buffer`` without an intermediate bytes object; 0 at the end."""
        view = memoryview(buffer)[: self._left]
        count = self._file.readinto(view) if view else 0  # type: ignore[attr-defined]
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _MemberReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _normalize(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."


def open_archive_source(
    path: Path, display: str, stack: contextlib.ExitStack, *, kind: str
) -> BlobSource:
    """Open an image archive file, or a folder it was extracted to, as a BlobSource.

    ``kind`` names the archive format in errors (``docker archive``, ``OCI archive``). An
    archive compressed as a whole is decompressed into a temporary file that ``stack`` deletes.
    """
    if not path.exists():
        raise ImageNotFoundError(f"{display}: no such file; check the path of the {kind}")
    if path.is_dir():
        return DirectorySource(path, display=display)
    try:
        with open(path, "rb") as stream:
            compression = sniff(stream.read(4))
    except OSError as exc:
        raise ImageFormatError(
            f"{display}: cannot read ({exc.strerror}); check its permissions"
        ) from None
    if compression is not Compression.NONE:
        path = decompress_to_temp(path, display, compression, stack)
    return TarSource(path, display=display)


def decompress_to_temp(
    path: Path, display: str, compression: Compression, stack: contextlib.ExitStack
) -> Path:
    """Decompress a whole compressed archive into a temporary file that ``stack`` deletes.

    The output is capped at ``LayerLimits.max_archive_bytes``, so that a small crafted file
    cannot fill the disk.
    """
    limit = LayerLimits.from_environment().max_archive_bytes
    temp = stack.enter_context(tempfile.TemporaryDirectory(prefix="edgetrim-archive-"))
    target = Path(temp) / "archive.tar"
    logger.info("decompressing %s archive %s into %s", compression.value, display, target)
    written = 0
    with open(path, "rb") as raw, open(target, "wb") as out:
        stream = decompress(raw, name=display)
        try:
            while chunk := stream.read(_CHUNK_SIZE):
                written += len(chunk)
                if written > limit:
                    raise UnsafeLayerError(
                        f"{display}: the archive decompresses to more than {limit} bytes, the "
                        f"limit {ARCHIVE_SIZE_VARIABLE} sets; it may be a decompression bomb, "
                        "or raise the limit if the archive is genuine"
                    )
                out.write(chunk)
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise ImageFormatError(
                f"{display}: the {compression.value} data is corrupt or truncated ({exc}); "
                "export the archive again"
            ) from None
    return target
