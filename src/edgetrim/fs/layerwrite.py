"""Write a subset of an image's final filesystem as one deterministic layer tar.

The same image, tree and keep set always give the same bytes: PAX format, members sorted by
path, the ownership names and mtimes of the source, and compression without timestamps or file
names at a fixed level. Content goes into a spool keyed by digest first, because the tar is
written in path order and the layers come in layer order. It is copied from an unpacked rootfs
of the image when one is given and its content matches the digest, and otherwise streamed from
the original layers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import zstandard

from edgetrim.errors import ImageFormatError
from edgetrim.fs.beneath import open_beneath
from edgetrim.fs.entry import FileEntry, FileType
from edgetrim.fs.safetar import iter_contents
from edgetrim.fs.tree import ROOT, ContentSource, FileTree, parent_of
from edgetrim.image.digest import Digest
from edgetrim.image.model import Image

log = logging.getLogger(__name__)

Compression = Literal["gzip", "zstd", "none"]

GZIP_LEVEL = 6
ZSTD_LEVEL = 3

_TAR_TYPES = {
    FileType.REGULAR: tarfile.REGTYPE,
    FileType.DIRECTORY: tarfile.DIRTYPE,
    FileType.SYMLINK: tarfile.SYMTYPE,
    FileType.HARDLINK: tarfile.LNKTYPE,
    FileType.CHAR_DEVICE: tarfile.CHRTYPE,
    FileType.BLOCK_DEVICE: tarfile.BLKTYPE,
    FileType.FIFO: tarfile.FIFOTYPE,
}
_CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class LayerBlobInfo:
    """The digests and sizes of a written layer, as a manifest and an image config record them.

    ``digest`` and ``size`` describe the bytes written, after compression. ``diff_id`` and
    ``uncompressed_size`` describe the tar inside them.
    """

    digest: Digest
    diff_id: Digest
    size: int
    uncompressed_size: int


def write_layer(
    image: Image,
    tree: FileTree,
    keep: set[str],
    out: BinaryIO,
    *,
    compression: Compression = "gzip",
    replacements: Mapping[str, bytes] | None = None,
    spool_dir: Path | None = None,
    content_root: Path | None = None,
) -> LayerBlobInfo:
    """Write one layer tar holding exactly the ``keep`` paths of ``tree`` to ``out``.

    ``replacements`` gives new content for kept regular files, such as a rewritten package
    database. Their other metadata stays as the tree records it. The content of kept files is
    spooled in a temporary folder in ``spool_dir`` (default: the system's temporary folder).
    ``content_root`` is a rootfs unpacked from ``image``: content is copied from there, which
    saves reading every layer again, and only a file whose sha256 differs from the tree's
    record, or that is missing there, is streamed from the layers.

    Every parent directory of a kept path must be kept too; ``/`` is written as ``./`` only if
    it is in ``keep``. Kept paths that share an inode are written once as a regular file, under
    the first of them in sorted order, and as hardlinks to it under the others, even when the
    original target is not kept. Raises ValueError for a path missing from ``tree`` or a kept
    path whose parent is not kept, and ImageFormatError if the layers do not match ``tree``.
    """
    replaced = dict(replacements or {})
    paths = _check_keep(tree, keep)
    for path in replaced:
        entry = tree.get(path)
        if path not in keep or entry is None or not entry.is_regular:
            raise ValueError(f"a replacement must be a kept regular file: {path}")
    link_to = _link_plan(tree, [p for p in paths if p not in replaced])
    with tempfile.TemporaryDirectory(prefix="edgetrim-spool-", dir=spool_dir) as spool:
        spooled = [p for p in paths if p not in link_to and p not in replaced]
        _spool_contents(image, tree, spooled, Path(spool), content_root)
        return _write_tar(tree, paths, link_to, Path(spool), out, compression, replaced)


def _check_keep(tree: FileTree, keep: set[str]) -> list[str]:
    missing = sorted(path for path in keep if path not in tree)
    if missing:
        raise ValueError(f"kept paths not in the image filesystem: {', '.join(missing[:5])}")
    orphans = sorted(
        p for p in keep if p != ROOT and parent_of(p) != ROOT and parent_of(p) not in keep
    )
    if orphans:
        raise ValueError(f"kept paths whose parent directory is not kept: {', '.join(orphans[:5])}")
    return sorted(keep)


def _link_plan(tree: FileTree, paths: list[str]) -> dict[str, str]:
    """Map each kept path that will be a hardlink to the kept path it links to."""
    first_by_source: dict[ContentSource, str] = {}
    link_to: dict[str, str] = {}
    for path in paths:
        source = tree.content_source(path)
        if source is None:
            continue
        first = first_by_source.setdefault(source, path)
        if first != path:
            link_to[path] = first
    return link_to


def _spool_contents(
    image: Image, tree: FileTree, paths: list[str], spool: Path, content_root: Path | None
) -> None:
    """Copy the content of every kept file into ``spool``, named by digest."""
    sources: list[ContentSource] = []
    first_path: dict[str, str] = {}
    for path in paths:
        source = tree.content_source(path)
        if source is not None:
            sources.append(source)
            first_path.setdefault(source.digest, path)
    needed = set(first_path)
    if content_root is not None:
        for digest, path in first_path.items():
            _copy_checked(content_root, path, digest, spool)
    members_by_layer: dict[int, set[str]] = {}
    for source in sources:
        if not (spool / source.digest).exists():
            members_by_layer.setdefault(source.layer, set()).add(source.path)
    streamed = sum(len(members) for members in members_by_layer.values())
    log.debug("%d kept files to read from the layers", streamed)
    for _, member in iter_contents(image, members_by_layer):
        with tempfile.NamedTemporaryFile(dir=spool, delete=False) as part:
            digest = member.read_content(part)
        if digest in needed and not (spool / digest).exists():
            os.replace(part.name, spool / digest)
        else:
            os.unlink(part.name)
    missing = sorted(digest for digest in needed if not (spool / digest).exists())
    if missing:
        raise ImageFormatError(
            f"no layer of the image has content sha256:{missing[0]} that the file tree records; "
            "the tree was built from a different image"
        )


def _copy_checked(root: Path, path: str, digest: str, spool: Path) -> None:
    """Copy ``path`` of an unpacked rootfs into the spool if its sha256 is ``digest``."""
    hasher = hashlib.sha256()
    try:
        with (
            open_beneath(root, path) as source,
            tempfile.NamedTemporaryFile(dir=spool, delete=False) as part,
        ):
            while chunk := source.read(_CHUNK_SIZE):
                hasher.update(chunk)
                part.write(chunk)
    except OSError as exc:
        log.debug("%s: not copied from %s (%s)", path, root, exc)
        return
    if hasher.hexdigest() == digest:
        os.replace(part.name, spool / digest)
    else:
        log.warning("%s in %s differs from the image; reading it from the layers", path, root)
        os.unlink(part.name)


def _entry(tree: FileTree, path: str) -> FileEntry:
    entry = tree.get(path)
    assert entry is not None  # _check_keep accepted only paths of the tree
    return entry


def _write_tar(
    tree: FileTree,
    paths: list[str],
    link_to: dict[str, str],
    spool: Path,
    out: BinaryIO,
    compression: Compression,
    replaced: Mapping[str, bytes],
) -> LayerBlobInfo:
    blob = _HashingWriter(out)
    compressor = _open_compressor(blob, compression)
    tar_bytes = _HashingWriter(compressor)
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=tar_bytes,
        mode="w",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for path in paths:
            entry = _entry(tree, path)
            info = _tar_info(entry, link_to.get(path))
            if path in replaced:
                info.size = len(replaced[path])
                tar.addfile(info, io.BytesIO(replaced[path]))
            elif info.type == tarfile.REGTYPE:
                with open(spool / entry.digest, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)
    if compressor is not blob:
        compressor.close()
    diff_id = Digest("sha256", tar_bytes.hash.hexdigest())
    log.debug("wrote layer %s with %d paths (%s)", diff_id, len(paths), compression)
    return LayerBlobInfo(
        digest=Digest("sha256", blob.hash.hexdigest()),
        diff_id=diff_id,
        size=blob.size,
        uncompressed_size=tar_bytes.size,
    )


def _open_compressor(blob: _HashingWriter, compression: Compression) -> BinaryIO:
    if compression == "gzip":
        # filename="" and mtime=0 keep the gzip header free of anything that varies per run.
        return gzip.GzipFile(
            filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=GZIP_LEVEL
        )  # type: ignore[return-value]
    if compression == "zstd":
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        return compressor.stream_writer(blob, closefd=False)  # type: ignore[arg-type, return-value]
    if compression == "none":
        return blob  # type: ignore[return-value]
    raise ValueError(f"unknown layer compression {compression!r}; use gzip, zstd or none")


def _tar_info(entry: FileEntry, link_to: str | None) -> tarfile.TarInfo:
    """Build the tar header of one entry; ``link_to`` makes it a hardlink to that kept path."""
    info = tarfile.TarInfo("." if entry.path == ROOT else entry.path[1:])
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname, info.gname = entry.uname, entry.gname
    info.mtime = entry.mtime
    if link_to is not None:
        info.type = tarfile.LNKTYPE
        info.linkname = link_to[1:]
        return info
    info.type = _TAR_TYPES[entry.type]
    if entry.type is FileType.HARDLINK:
        # The first kept name of an inode carries its content, whatever it was in the source.
        info.type = tarfile.REGTYPE
    if info.type == tarfile.REGTYPE:
        info.size = entry.size
    elif entry.type is FileType.SYMLINK:
        info.linkname = entry.link_target
    elif entry.type in (FileType.CHAR_DEVICE, FileType.BLOCK_DEVICE):
        info.devmajor, info.devminor = entry.devmajor, entry.devminor
    info.pax_headers = {
        f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
        for key, value in sorted(entry.xattrs.items())
    }
    return info


class _HashingWriter:
    """A write-only stream that passes bytes on to ``out`` and counts and hashes them."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._out.flush()
