"""Read the members of an untrusted layer tar: clean names, reject escapes, hash content.

This is the only module that turns layer tars into entries. It reads the stream sequentially
with :class:`~edgetrim.fs.tarstream.TarStream`, which parses headers itself and hands out
content without copying, and continues with :mod:`tarfile` from the first GNU sparse member on.
It keeps no member after moving past it, so memory does not grow with the size of the layer,
only with the size of one header. Every name comes out as an absolute, normalized path. A
name or hardlink target whose ``..`` climbs above the root raises :class:`UnsafeLayerError`
naming the layer and the member.

The stream is counted against :class:`~edgetrim.fs.limits.LayerLimits`: the bytes of the tar,
the sum of its file sizes, its number of entries, and the bytes of each header. Numeric header
fields that the operating system cannot apply (a negative size, a uid above 2**32 - 2, an mtime
that is not a finite time, a device number Linux cannot encode) raise UnsafeLayerError too,
because unpacking such an entry would fail halfway.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import math
import os
import tarfile
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from edgetrim.errors import ImageFormatError, UnsafeLayerError
from edgetrim.fs.chunks import (
    CHUNK_SIZE,
    BlockingChunks,
    Readable,
    ReadAheadChunks,
)
from edgetrim.fs.entry import FileEntry, FileType
from edgetrim.fs.limits import LAYER_ENTRIES_VARIABLE, LayerLimits
from edgetrim.fs.tarstream import HandOver, TarHeader, TarReadError, TarStream, too_large
from edgetrim.image.model import Image

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# AUFS keeps its own bookkeeping under names with this prefix; they are not image content.
AUFS_META_PREFIX = ".wh..wh."

_PAX_XATTR = "SCHILY.xattr."
# uid_t is 32 bits, and (uid_t)-1 means "leave unchanged" to chown(2).
_MAX_ID = (1 << 32) - 2
# Linux encodes device numbers with a 12-bit major and a 20-bit minor (MINORBITS).
_MAX_DEVMAJOR = (1 << 12) - 1
_MAX_DEVMINOR = (1 << 20) - 1
# utimensat(2) takes nanoseconds in a signed 64-bit integer.
_MAX_MTIME = ((1 << 63) - 1) // 1_000_000_000
# NAME_MAX and PATH_MAX of Linux: longer names cannot be created when unpacking.
_MAX_COMPONENT_BYTES = 255
_MAX_PATH_BYTES = 4095
_LIBARCHIVE_XATTR = "LIBARCHIVE.xattr."

_DEVICE_TYPES = (tarfile.CHRTYPE, tarfile.BLKTYPE)
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
    """Anything with a binary ``write``: a file, a BytesIO, a hashing writer.

    ``write`` may get a memoryview into a buffer that is reused after it returns, so a sink
    that keeps the data must copy it.
    """

    def write(self, data: bytes | memoryview, /) -> object: ...


# Returns the chunks of one member's content, each valid until the next is taken.
ContentReader = Callable[[], Iterator[bytes | memoryview]]
# The header fields of a member, from tarfile or from TarStream.
Header = tarfile.TarInfo | TarHeader


@dataclass(frozen=True)
class Whiteout:
    """A whiteout marker: the path it deletes from lower layers, or a directory made opaque."""

    path: str
    opaque: bool = False


class TarMember:
    """One filesystem entry of a layer tar whose content, if any, is still unread in the stream.

    The content can be read only until the iteration moves to the next member. ``offset`` is
    where a regular file's content starts in the layer tar, when the bytes there are the
    content as they are (not for sparse members); otherwise it is None.
    """

    __slots__ = ("entry", "offset", "_content", "_layer_name", "_readable", "_stream")

    def __init__(
        self,
        entry: FileEntry,
        content: ContentReader,
        layer_name: str,
        offset: int | None = None,
        stream: TarStream | None = None,
    ):
        self.entry = entry
        self.offset = offset
        self._content = content
        self._layer_name = layer_name
        self._readable = True
        self._stream = stream

    def content_at_once(self) -> memoryview | None:
        """Return a regular file's whole content as one view, if the reader has it at hand.

        That is the case for most small files. The view is valid until the iteration moves on.
        Returns None, reading nothing, otherwise; :meth:`read_content` then reads the file.
        """
        if self._stream is None or not self._readable:
            return None
        view = self._stream.content_at_once(self.entry.size)
        if view is not None:
            self._start_reading()
        return view

    def read_content(self, out: ContentSink | None = None) -> str:
        """Stream a regular file's content into ``out`` (or nowhere) and hash it with sha256.

        Sets ``entry.digest`` to the hex digest and returns it. Sparse members are expanded,
        so the digest is that of the file as a reader sees it, holes read as zero bytes.
        """
        self._start_reading()
        digest = hashlib.sha256()
        try:
            if out is None:
                for chunk in self._content():
                    digest.update(chunk)
            else:
                for chunk in self._content():
                    digest.update(chunk)
                    out.write(chunk)
        except (tarfile.TarError, TarReadError) as exc:
            raise self._corrupt(exc) from exc
        self.entry.digest = digest.hexdigest()
        return self.entry.digest

    def _start_reading(self) -> None:
        if not self.entry.is_regular:
            raise ValueError(f"{self.entry.path} is a {self.entry.type.value}, not a regular file")
        if not self._readable:
            raise ValueError(f"content of {self.entry.path} was read already or has been skipped")
        self._readable = False

    def _corrupt(self, exc: Exception) -> ImageFormatError:
        return ImageFormatError(
            f"{self._layer_name}: content of {self.entry.path} is corrupt or truncated ({exc})"
        )

    def _close(self) -> None:
        self._readable = False


def clean_path(name: str, *, layer_name: str, member: str | None = None) -> str:
    """Return ``name`` as an absolute normalized path inside the image root.

    Leading ``./`` and ``/`` are dropped and ``//`` and ``.`` collapse, so ``./usr//bin/`` becomes
    ``/usr/bin``. ``..`` removes the previous component. A ``..`` that would climb above the root
    raises UnsafeLayerError naming ``layer_name`` and ``member`` (default: ``name``).
    """
    if "\x00" in name:
        raise UnsafeLayerError(
            f"{layer_name}: tar entry {member or name!r} contains a NUL byte in {name!r}; "
            "the layer is malformed or hostile, do not use this image"
        )
    wrapped = f"/{name}/"
    if "/./" not in wrapped and "/../" not in wrapped and "//" not in name:
        # No empty, "." or ".." component between the ends: the common case, done quickly.
        return "/" + name.strip("/")
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
    stream: Readable,
    *,
    layer_index: int,
    layer_name: str,
    limits: LayerLimits | None = None,
    read_ahead: bool = False,
) -> Iterator[TarMember | Whiteout]:
    """Yield the members of one layer tar in stream order, as entries or whiteout markers.

    See :class:`LayerReader`, which this iterates.
    """
    return iter(
        LayerReader(
            stream,
            layer_index=layer_index,
            layer_name=layer_name,
            limits=limits,
            read_ahead=read_ahead,
        )
    )


class LayerReader:
    """The members of one layer tar in stream order, as entries or whiteout markers.

    ``layer_index`` becomes ``FileEntry.layer``. A hardlink's ``link_target`` is the cleaned
    absolute path it names in the tar; the tree resolves it further. After the end-of-archive
    marker the rest of the stream is read too, within the same limits, and ``bytes_read`` is
    then the size of the stream. ``limits`` defaults to ``LayerLimits.from_environment()``.
    With ``read_ahead`` a second thread reads the stream, and so runs the digest checks of a
    verifying stream, while the caller parses. Iterating raises UnsafeLayerError for escaping
    names, unsupported member types, unusable header values and exceeded limits,
    ImageFormatError for a corrupt tar.
    """

    def __init__(
        self,
        stream: Readable,
        *,
        layer_index: int,
        layer_name: str,
        limits: LayerLimits | None = None,
        read_ahead: bool = False,
    ):
        self._stream = stream
        self._layer_index = layer_index
        self._layer_name = layer_name
        self._limits = limits or LayerLimits.from_environment()
        self._read_ahead = read_ahead
        self.bytes_read = 0

    def __iter__(self) -> Iterator[TarMember | Whiteout]:
        chunks = (ReadAheadChunks if self._read_ahead else BlockingChunks)(self._stream)
        tar = TarStream(
            chunks,
            layer_name=self._layer_name,
            max_bytes=self._limits.max_bytes,
            max_header_bytes=self._limits.max_header_bytes,
        )
        try:
            yield from self._members(tar)
        finally:
            self.bytes_read = tar.count
            chunks.close()

    def _members(self, tar: TarStream) -> Iterator[TarMember | Whiteout]:
        layer_name = self._layer_name
        if tar.at_end():
            # A zero-byte layer has no entries, though tarfile would reject it as no archive.
            return
        counts = _Counts(self._limits, layer_name)
        while True:
            try:
                header = tar.next_header()
            except TarReadError as exc:
                raise _read_error(layer_name, exc) from exc
            except HandOver as handover:
                # The rest of the stream passes through the TarStream and the bounded stream,
                # so the limits of both apply. The TarStream checked the replayed headers.
                bounded = _BoundedStream(tar, self._limits, layer_name)  # type: ignore[arg-type]
                yield from _tarfile_members(
                    _Replay(handover.replay, bounded),  # type: ignore[arg-type]
                    bounded,
                    counts,
                    layer_index=self._layer_index,
                    layer_name=layer_name,
                    global_headers=handover.global_headers,
                )
                return
            if header is None:
                break
            counts.add(header)
            found = _member(header, self._layer_index, layer_name)
            if isinstance(found, FileEntry):
                member = TarMember(
                    found,
                    functools.partial(tar.content, header.size),
                    layer_name,
                    tar.position if found.is_regular else None,
                    tar,
                )
                yield member
                member._close()
            elif found is not None:
                yield found
        tar.drain()


def _iter_layer_with_tarfile(
    stream: BinaryIO, *, layer_index: int, layer_name: str, limits: LayerLimits | None = None
) -> Iterator[TarMember | Whiteout]:
    """Yield the members of one layer tar as :func:`iter_layer` does, parsed by tarfile alone.

    The tests compare both parsers on real and crafted layers with this.
    """
    limits = limits or LayerLimits.from_environment()
    bounded = _BoundedStream(stream, limits, layer_name)
    head = bounded.read(tarfile.BLOCKSIZE)
    if not head:
        return
    counts = _Counts(limits, layer_name)
    yield from _tarfile_members(
        _Replay(head, bounded),  # type: ignore[arg-type]
        bounded,
        counts,
        layer_index=layer_index,
        layer_name=layer_name,
        at_start=True,
    )


def _tarfile_members(
    fileobj: BinaryIO,
    bounded: _BoundedStream,
    counts: _Counts,
    *,
    layer_index: int,
    layer_name: str,
    global_headers: dict[str, str] | None = None,
    at_start: bool = False,
) -> Iterator[TarMember | Whiteout]:
    """Yield the members that tarfile parses from ``fileobj``, which reads from ``bounded``.

    ``at_start`` tells whether ``fileobj`` starts at the start of the layer tar, for the
    error message. ``global_headers`` are PAX global records read before ``fileobj`` starts.
    """
    bounded.start_header()
    try:
        # The with block below closes the archive.
        tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=fileobj,
            mode="r|",
            encoding="utf-8",
            errors="surrogateescape",
            format=tarfile.PAX_FORMAT,
            pax_headers=dict(global_headers or {}),
        )
    except tarfile.TarError as exc:
        raise _read_error(layer_name, TarReadError(str(exc), at_start=at_start)) from exc
    except ValueError as exc:
        # tarfile applies GNU.sparse.* PAX records with a bare int(), and decodes a hdrcharset
        # record strictly as UTF-8 (UnicodeDecodeError); both raise ValueError.
        raise _read_error(
            layer_name, TarReadError(f"invalid PAX record: {exc}", at_start=at_start)
        ) from exc
    except RecursionError:
        raise _header_chain_error(layer_name) from None
    with tar:
        while (info := _next_info(tar, bounded, layer_name)) is not None:
            counts.add(info)
            found = _member(info, layer_index, layer_name)
            if isinstance(found, FileEntry):
                member = TarMember(
                    found, functools.partial(_tarfile_content, tar, info), layer_name
                )
                yield member
                member._close()
            elif found is not None:
                yield found
            _skip_to_next_header(tar, layer_name)
    bounded.drain()


def _tarfile_content(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    source = tar.extractfile(info)
    assert source is not None  # extractfile returns None only for non-regular members
    while chunk := source.read(CHUNK_SIZE):
        yield chunk


def _read_error(layer_name: str, exc: TarReadError) -> ImageFormatError:
    if exc.at_start:
        return ImageFormatError(f"{layer_name}: layer is not a valid tar archive ({exc})")
    return ImageFormatError(f"{layer_name}: layer tar is corrupt or truncated ({exc})")


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


class _BoundedStream:
    """The layer stream as tarfile reads it, counted against the layer limits.

    Between :meth:`start_header` and the next :meth:`end_header` only header blocks are read,
    because the content of the previous member was skipped first. tarfile reads a PAX or GNU
    extension header into memory whole, so capping those bytes caps the memory it uses.
    """

    def __init__(self, stream: BinaryIO, limits: LayerLimits, layer_name: str):
        self._stream = stream
        self._limits = limits
        self._layer_name = layer_name
        self.count = 0
        self._header_start: int | None = None

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        if self.count > self._limits.max_bytes:
            raise too_large(self._layer_name, "the uncompressed layer tar", self._limits.max_bytes)
        if (
            self._header_start is not None
            and self.count - self._header_start > self._limits.max_header_bytes
        ):
            raise UnsafeLayerError(
                f"{self._layer_name}: a tar header with its PAX or GNU extension records is "
                f"larger than {self._limits.max_header_bytes} bytes; the layer is malformed "
                "or hostile, do not use this image"
            )
        return data

    def start_header(self) -> None:
        self._header_start = self.count

    def end_header(self) -> None:
        self._header_start = None

    def drain(self) -> None:
        """Read the rest of the stream, which follows the end-of-archive marker."""
        while self.read(CHUNK_SIZE):
            pass


class _Counts:
    """The entries and file bytes of one layer so far, checked against the limits."""

    def __init__(self, limits: LayerLimits, layer_name: str):
        self._limits = limits
        self._layer_name = layer_name
        self.entries = 0
        self.file_bytes = 0

    def add(self, info: Header) -> None:
        self.entries += 1
        if self.entries > self._limits.max_entries:
            raise UnsafeLayerError(
                f"{self._layer_name}: the layer has more than {self._limits.max_entries} "
                f"entries, the limit {LAYER_ENTRIES_VARIABLE} sets; raise the limit if the "
                "image is genuine"
            )
        if info.isreg() and info.size > 0:
            # For a sparse file this is its full size, which reading it produces.
            self.file_bytes += info.size
            if self.file_bytes > self._limits.max_bytes:
                raise too_large(self._layer_name, "the files of the layer", self._limits.max_bytes)


def _header_chain_error(layer_name: str) -> UnsafeLayerError:
    # tarfile parses each PAX or GNU extension header by recursion, so a long chain of them
    # exhausts the stack before the header budget runs out.
    return UnsafeLayerError(
        f"{layer_name}: a tar entry has a chain of more extension headers than Python can "
        "parse; the layer is malformed or hostile, do not use this image"
    )


def _skip_to_next_header(tar: tarfile.TarFile, layer_name: str) -> None:
    """Skip what is left of the current member's content, so the next read is a header.

    ``offset`` is where tarfile expects the next header and ``fileobj`` its stream; both are
    undocumented attributes of TarFile, stable since Python 3.0.
    """
    stream = tar.fileobj  # type: ignore[attr-defined]
    try:
        if stream.tell() < tar.offset:  # type: ignore[attr-defined]
            stream.seek(tar.offset)  # type: ignore[attr-defined]
    except (tarfile.TarError, EOFError) as exc:
        raise ImageFormatError(f"{layer_name}: layer tar is corrupt or truncated ({exc})") from exc


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


def _next_info(
    tar: tarfile.TarFile, bounded: _BoundedStream, layer_name: str
) -> tarfile.TarInfo | None:
    bounded.start_header()
    try:
        info = tar.next()
    except tarfile.TarError as exc:
        raise ImageFormatError(f"{layer_name}: layer tar is corrupt or truncated ({exc})") from exc
    except ValueError as exc:
        # tarfile applies GNU.sparse.* PAX records with a bare int(), and decodes a hdrcharset
        # record strictly as UTF-8 (UnicodeDecodeError); both raise ValueError.
        raise ImageFormatError(
            f"{layer_name}: layer tar has an invalid PAX record ({exc})"
        ) from exc
    except RecursionError:
        raise _header_chain_error(layer_name) from None
    bounded.end_header()
    # tarfile keeps every header it has read in the undocumented ``members`` list. Nothing here
    # looks members up by name, so dropping them keeps memory flat on layers with many entries.
    tar.members.clear()  # type: ignore[attr-defined]
    return info


def _member(info: Header, layer_index: int, layer_name: str) -> FileEntry | Whiteout | None:
    """Return the entry or whiteout that a header makes, or None for AUFS metadata."""
    path = clean_path(info.name, layer_name=layer_name)
    parent, _, base = path.rpartition("/")
    parent = parent or "/"
    # Every marker name below contains WHITEOUT_PREFIX, which few paths do.
    if WHITEOUT_PREFIX in path:
        if base == OPAQUE_MARKER:
            return Whiteout(parent, opaque=True)
        if AUFS_META_PREFIX in path and any(
            part.startswith(AUFS_META_PREFIX) for part in path.split("/")
        ):
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
    return _entry(info, path, kind, layer_index, layer_name)


def _whiteout(name: str, parent: str, target: str, layer_name: str) -> Whiteout:
    if target in ("", ".", ".."):
        raise UnsafeLayerError(
            f"{layer_name}: whiteout {name!r} names no deletable path; "
            "the layer is malformed or hostile, do not use this image"
        )
    return Whiteout(parent.rstrip("/") + "/" + target)


def _check_numbers(info: Header, path: str, layer_name: str) -> None:
    """Reject header values that no file system can apply, before anything tries to."""
    mtime = info.mtime
    if not (
        info.size >= 0
        and 0 <= info.uid <= _MAX_ID
        and 0 <= info.gid <= _MAX_ID
        and type(mtime) is int
        and -_MAX_MTIME <= mtime <= _MAX_MTIME
        and info.type not in _DEVICE_TYPES
    ):
        # Something is unusual: a float mtime, a device, or a value out of range.
        _check_unusual_numbers(info, path, layer_name)
    for name in (path, info.linkname):
        if name.isascii():
            # One byte per character, so the lengths of the string are those of the bytes.
            too_long = len(name) > _MAX_PATH_BYTES or (
                len(name) > _MAX_COMPONENT_BYTES
                and max(map(len, name.split("/"))) > _MAX_COMPONENT_BYTES
            )
        else:
            encoded = os.fsencode(name)
            too_long = len(encoded) > _MAX_PATH_BYTES or any(
                len(part) > _MAX_COMPONENT_BYTES for part in encoded.split(b"/")
            )
        if too_long:
            raise UnsafeLayerError(
                f"{layer_name}: tar entry {path[:200]!r} has a name or link target longer "
                f"than Linux allows ({_MAX_COMPONENT_BYTES} bytes per component, "
                f"{_MAX_PATH_BYTES} in all), so it cannot be unpacked"
            )


def _check_unusual_numbers(info: Header, path: str, layer_name: str) -> None:
    problem = ""
    if info.size < 0:
        problem = f"negative size {info.size}"
    elif not (0 <= info.uid <= _MAX_ID and 0 <= info.gid <= _MAX_ID):
        problem = f"uid {info.uid} or gid {info.gid} outside 0..{_MAX_ID}"
    elif not (isinstance(info.mtime, int | float) and math.isfinite(info.mtime)):
        problem = f"mtime {info.mtime!r}, which is not a finite time"
    elif abs(info.mtime) > _MAX_MTIME:
        problem = f"mtime {info.mtime!r} outside the range a file system stores"
    elif (info.ischr() or info.isblk()) and not (
        0 <= info.devmajor <= _MAX_DEVMAJOR and 0 <= info.devminor <= _MAX_DEVMINOR
    ):
        problem = f"device number {info.devmajor}:{info.devminor}, which Linux cannot encode"
    if problem:
        raise UnsafeLayerError(
            f"{layer_name}: tar entry {path} has {problem}; the layer is malformed or hostile, "
            "do not use this image"
        )


def _entry(info: Header, path: str, kind: FileType, layer_index: int, layer_name: str) -> FileEntry:
    _check_numbers(info, path, layer_name)
    entry = FileEntry(
        path=path,
        type=kind,
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        mtime=int(info.mtime),  # NOTE: sub-second PAX mtimes are truncated to whole seconds.
        size=info.size if kind is FileType.REGULAR else 0,
        layer=layer_index,
        xattrs=_xattrs(info.pax_headers, layer_name, path),
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


def _xattrs(pax_headers: Mapping[str, str], layer_name: str, path: str) -> dict[str, bytes]:
    """Collect extended attributes from PAX records, as GNU tar, bsdtar and Docker write them."""
    if not pax_headers:
        return {}
    found: dict[str, bytes] = {}
    for key, value in pax_headers.items():
        if key.startswith(_LIBARCHIVE_XATTR):
            # libarchive percent-encodes the name and base64-encodes the value.
            name = urllib.parse.unquote(key[len(_LIBARCHIVE_XATTR) :], errors="surrogateescape")
            encoded = value.encode("utf-8", "surrogateescape").rstrip(b"=")
            try:
                found[name] = base64.b64decode(encoded + b"=" * (-len(encoded) % 4))
            except binascii.Error as exc:
                raise ImageFormatError(
                    f"{layer_name}: PAX record {key} of {path} is not valid base64 ({exc}); "
                    "the layer is malformed"
                ) from None
    for key, value in pax_headers.items():
        if key.startswith(_PAX_XATTR):
            # tarfile decoded the raw value with surrogateescape, so encoding restores the bytes.
            found[key[len(_PAX_XATTR) :]] = value.encode("utf-8", "surrogateescape")
    return dict(sorted(found.items()))
