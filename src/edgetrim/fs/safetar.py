"""Read the members of an untrusted layer tar: clean names, reject escapes, hash content.

This is the only module that parses layer tars. It reads the stream sequentially (tarfile's
``r|`` mode) and keeps no member after moving past it, so memory does not grow with the size of
the layer. Every name comes out as an absolute, normalized path. A name or hardlink target whose
``..`` climbs above the root raises :class:`UnsafeLayerError` naming the layer and the member.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import tarfile
import urllib.parse
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from edgetrim.errors import ImageFormatError, UnsafeLayerError
from edgetrim.fs.entry import FileEntry, FileType
from edgetrim.image.model import Image

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# AUFS keeps its own bookkeeping under names with this prefix; they are not image content.
AUFS_META_PREFIX = ".wh..wh."

_CHUNK_SIZE = 1 << 20
_PAX_XATTR = "SCHILY.xattr."
_LIBARCHIVE_XATTR = "LIBARCHIVE.xattr."

_TYPES = {
    tarfile.REGTYPE: FileType.REGULAR,
    tarfile.AREGTYPE: FileType.REGULAR,
    tarfile.CONTTYPE: FileType.REGULAR,
    tarfile.GNUTYPE_SPARSE: FileType.REGULAR,
    tarfile.DIRTYPE: FileType.DIRECTORY,
    tarfile.SYMTYPE: FileType.SYMLINK,
    tarfile.LNKTYPE: FileType.HARDLINK,
    tarfile.CHRTYPE: FileType.CHAR_DEVICE,
    tarfile.BLKTYPE: FileType.BLOCK_DEVICE,
    tarfile.FIFOTYPE: FileType.FIFO,
}


class ContentSink(Protocol):
    """Anything with a binary ``write``: a file, a BytesIO, a hashing writer."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Whiteout:
    """A whiteout marker: the path it deletes from lower layers, or a directory made opaque."""

    path: str
    opaque: bool = False


class TarMember:
    """One filesystem entry of a layer tar whose content, if any, is still unread in the stream.

    The content can be read only until the iteration moves to the next member.
    """

    def __init__(
        self, entry: FileEntry, tar: tarfile.TarFile, info: tarfile.TarInfo, layer_name: str
    ):
        self.entry = entry
        self._tar = tar
        self._info = info
        self._layer_name = layer_name
        self._readable = True

    def read_content(self, out: ContentSink | None = None) -> str:
        """Stream a regular file's content into ``out`` (or nowhere) and hash it with sha256.

        Sets ``entry.digest`` to the hex digest and returns it. Sparse members are expanded,
        so the digest is that of the file as a reader sees it, holes read as zero bytes.
        """
        if not self.entry.is_regular:
            raise ValueError(f"{self.entry.path} is a {self.entry.type.value}, not a regular file")
        if not self._readable:
            raise ValueError(f"content of {self.entry.path} was read already or has been skipped")
        self._readable = False
        digest = hashlib.sha256()
        source = self._tar.extractfile(self._info)
        assert source is not None  # extractfile returns None only for non-regular members
        try:
            while chunk := source.read(_CHUNK_SIZE):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
        except tarfile.TarError as exc:
            raise ImageFormatError(
                f"{self._layer_name}: content of {self.entry.path} is corrupt or truncated ({exc})"
            ) from exc
        self.entry.digest = digest.hexdigest()
        return self.entry.digest

    def _close(self) -> None:
        self._readable = False


def clean_path(name: str, *, layer_name: str, member: str | None = None) -> str:
    """Return ``name`` as an absolute normalized path inside the image root.

    Leading ``./`` and ``/`` are dropped and ``//`` and ``.`` collapse, so ``./usr//bin/`` becomes
    ``/usr/bin``. ``..`` removes the previous component. A ``..`` that would climb above the root
    raises UnsafeLayerError naming ``layer_name`` and ``member`` (default: ``name``).
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise UnsafeLayerError(
                f"{layer_name}: tar entry {member or name!r} points outside the image root "
                f"through '..' in {name!r}; the layer is malformed or hostile, "
                "do not use this image"
            )
    return "/" + "/".join(parts)


def iter_layer(
    stream: BinaryIO, *, layer_index: int, layer_name: str
) -> Iterator[TarMember | Whiteout]:
    """Yield the members of one layer tar in stream order, as entries or whiteout markers.

    ``layer_index`` becomes ``FileEntry.layer``. A hardlink's ``link_target`` is the cleaned
    absolute path it names in the tar; the tree resolves it further. Raises UnsafeLayerError for
    escaping names and unsupported member types, ImageFormatError for a corrupt tar.
    """
    head = stream.read(tarfile.BLOCKSIZE)
    if not head:
        # A zero-byte layer has no entries, but tarfile would reject it as an invalid archive.
        return
    try:
        # The with block below closes the archive.
        tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=_Replay(head, stream), mode="r|", encoding="utf-8", errors="surrogateescape"
        )
    except tarfile.TarError as exc:
        raise ImageFormatError(f"{layer_name}: layer is not a valid tar archive ({exc})") from exc
    with tar:
        while (info := _next_info(tar, layer_name)) is not None:
            item = _member(tar, info, layer_index, layer_name)
            if item is None:
                continue
            yield item
            if isinstance(item, TarMember):
                item._close()


def iter_contents(
    image: Image, members_by_layer: Mapping[int, Collection[str]]
) -> Iterator[tuple[int, TarMember]]:
    """Stream the listed layers and yield the listed regular-file members with their layer index.

    ``members_by_layer`` maps a layer index to the member paths whose content the caller needs.
    A path that occurs more than once in a layer is yielded every time. Each layer is verified
    against its digests as it is read.
    """
    for index, layer in enumerate(image.layers):
        paths = members_by_layer.get(index)
        if not paths:
            continue
        with layer.read_tar() as stream:
            for item in iter_layer(stream, layer_index=index, layer_name=layer.label):
                if not isinstance(item, TarMember) or not item.entry.is_regular:
                    continue
                if item.entry.path in paths:
                    yield index, item


class _Replay:
    """A stream with its first bytes read already and put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0 or size >= len(self._head):
            data, self._head = self._head, b""
            more = self._rest.read(-1 if size < 0 else size - len(data))
            return data + more
        data, self._head = self._head[:size], self._head[size:]
        return data


def _next_info(tar: tarfile.TarFile, layer_name: str) -> tarfile.TarInfo | None:
    try:
        info = tar.next()
    except tarfile.TarError as exc:
        raise ImageFormatError(f"{layer_name}: layer tar is corrupt or truncated ({exc})") from exc
    # tarfile keeps every header it has read in the undocumented ``members`` list. Nothing here
    # looks members up by name, so dropping them keeps memory flat on layers with many entries.
    tar.members.clear()  # type: ignore[attr-defined]
    return info


def _member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, layer_index: int, layer_name: str
) -> TarMember | Whiteout | None:
    path = clean_path(info.name, layer_name=layer_name)
    parent, _, base = path.rpartition("/")
    parent = parent or "/"
    if base == OPAQUE_MARKER:
        return Whiteout(parent, opaque=True)
    if any(part.startswith(AUFS_META_PREFIX) for part in path.split("/")):
        log.debug("%s: skipping AUFS metadata entry %s", layer_name, path)
        return None
    if base.startswith(WHITEOUT_PREFIX):
        return _whiteout(info.name, parent, base[len(WHITEOUT_PREFIX) :], layer_name)
    kind = _TYPES.get(info.type)
    if kind is None:
        raise UnsafeLayerError(
            f"{layer_name}: tar entry {info.name!r} has unsupported type {info.type!r}; "
            "layers may hold only files, directories, links, devices and FIFOs"
        )
    return TarMember(_entry(info, path, kind, layer_index, layer_name), tar, info, layer_name)


def _whiteout(name: str, parent: str, target: str, layer_name: str) -> Whiteout:
    if target in ("", ".", ".."):
        raise UnsafeLayerError(
            f"{layer_name}: whiteout {name!r} names no deletable path; "
            "the layer is malformed or hostile, do not use this image"
        )
    return Whiteout(parent.rstrip("/") + "/" + target)


def _entry(
    info: tarfile.TarInfo, path: str, kind: FileType, layer_index: int, layer_name: str
) -> FileEntry:
    entry = FileEntry(
        path=path,
        type=kind,
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        mtime=int(info.mtime),  # NOTE: sub-second PAX mtimes are truncated to whole seconds.
        size=info.size if kind is FileType.REGULAR else 0,
        layer=layer_index,
        xattrs=_xattrs(info.pax_headers),
        uname=info.uname,
        gname=info.gname,
    )
    if kind is FileType.SYMLINK:
        if not info.linkname:
            raise UnsafeLayerError(
                f"{layer_name}: symlink {info.name!r} has an empty target; the layer is malformed"
            )
        entry.link_target = info.linkname
    elif kind is FileType.HARDLINK:
        entry.link_target = clean_path(info.linkname, layer_name=layer_name, member=info.name)
    elif kind in (FileType.CHAR_DEVICE, FileType.BLOCK_DEVICE):
        entry.devmajor, entry.devminor = info.devmajor, info.devminor
    return entry


def _xattrs(pax_headers: Mapping[str, str]) -> dict[str, bytes]:
    """Collect extended attributes from PAX records, as GNU tar, bsdtar and Docker write them."""
    found: dict[str, bytes] = {}
    for key, value in pax_headers.items():
        if key.startswith(_LIBARCHIVE_XATTR):
            # libarchive percent-encodes the name and base64-encodes the value.
            name = urllib.parse.unquote(key[len(_LIBARCHIVE_XATTR) :], errors="surrogateescape")
            encoded = value.encode("utf-8", "surrogateescape").rstrip(b"=")
            found[name] = base64.b64decode(encoded + b"=" * (-len(encoded) % 4))
    for key, value in pax_headers.items():
        if key.startswith(_PAX_XATTR):
            # tarfile decoded the raw value with surrogateescape, so encoding restores the bytes.
            found[key[len(_PAX_XATTR) :]] = value.encode("utf-8", "surrogateescape")
    return dict(sorted(found.items()))
