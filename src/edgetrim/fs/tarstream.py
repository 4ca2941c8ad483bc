"""A sequential reader of tar archives that parses headers itself and copies no content.

:mod:`tarfile` in stream mode parses each header through several layers of Python calls and
copies every content byte twice, into its record buffer and into the bytes it returns. This
reader takes the stream in large chunks (:mod:`edgetrim.fs.chunks`), parses the header formats
that container layers use (ustar, GNU long names and link targets, PAX extended and global
headers), and hands out file content as memoryview slices of the chunks.

For the same bytes it returns the header fields that ``tarfile`` of Python 3.11.7 returns. It is
as lenient as ``tarfile``, too: where a member should start, a zero block, the end of the stream
or an invalid header ends the archive. Only at the first header is that an error.

GNU sparse members, old GNU style or PAX style, and members with more than
:data:`MAX_EXTENSION_HEADERS` extension headers are not parsed here. :class:`HandOver` tells the
caller to continue with ``tarfile`` from such a member on.
"""

from __future__ import annotations

import re
import struct
import tarfile
import zlib
from collections.abc import Iterator

from edgetrim.errors import UnsafeLayerError
from edgetrim.fs.chunks import ChunkSource
from edgetrim.fs.limits import LAYER_SIZE_VARIABLE

BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(BLOCK)
_EMPTY_VIEW = memoryview(b"")
# The ustar header, with fields in groups: name, then mode with uid and gid, size, mtime,
# chksum, typeflag, linkname, then magic to devminor, prefix, and 12 unused bytes. Within a
# layer the grouped fields take few distinct values, so each group is decoded once per value.
_FIELDS = struct.Struct("100s24s12s12s8sc100s88s155s12x")
_SIGNED_BYTES = struct.Struct("148b8x356b")

_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_EXTENSION_TYPES = frozenset(
    (*_LONG_TYPES, tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE)
)
_REGULAR_TYPES = frozenset(tarfile.REGULAR_TYPES)
# tarfile skips the data of these types and of unknown ones; other known types have none.
_TYPES_WITHOUT_DATA = frozenset(tarfile.SUPPORTED_TYPES) - _REGULAR_TYPES
# No real archiver writes more extension headers for one member than this. Such a member goes
# to tarfile, so it is accepted or rejected exactly as before.
MAX_EXTENSION_HEADERS = 64

_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
_PAX_CHARSET = re.compile(rb"\d+ hdrcharset=([^\n]+)\n")
_SPARSE_PREFIX = "GNU.sparse."


class TarReadError(Exception):
    """The archive is corrupt or truncated. ``at_start`` is true when its first header is."""

    def __init__(self, message: str, *, at_start: bool = False):
        super().__init__(message)
        self.at_start = at_start


class HandOver(Exception):  # noqa: N818 - a signal to the caller, not an error
    """The next member needs ``tarfile``, which is to continue reading from it.

    ``replay`` contains the bytes of the member's headers read so far, which come before the
    rest of the stream. ``global_headers`` are the PAX global records in force before them.
    """

    def __init__(self, replay: bytes, global_headers: dict[str, str]):
        super().__init__("a member needs tarfile")
        self.replay = replay
        self.global_headers = global_headers


class TarHeader:
    """One member's header with its extension records applied.

    The attributes are those of :class:`tarfile.TarInfo` that edgetrim reads, with the same
    names and values.
    """

    __slots__ = (
        "name",
        "type",
        "mode",
        "uid",
        "gid",
        "size",
        "mtime",
        "linkname",
        "uname",
        "gname",
        "devmajor",
        "devminor",
        "pax_headers",
    )

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int | float
    linkname: str
    uname: str
    gname: str
    devmajor: int
    devminor: int
    pax_headers: dict[str, str]

    def isreg(self) -> bool:
        return self.type in _REGULAR_TYPES

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE

    def ischr(self) -> bool:
        return self.type == tarfile.CHRTYPE

    def isblk(self) -> bool:
        return self.type == tarfile.BLKTYPE


class TarStream:
    """The members of one tar archive, read in order from a :class:`ChunkSource`.

    ``count`` is the number of stream bytes taken so far. Passing ``max_bytes`` raises
    UnsafeLayerError naming ``layer_name`` (from :func:`too_large`) when it is exceeded, and
    one member's headers longer than ``max_header_bytes`` raise it too.
    """

    def __init__(
        self, chunks: ChunkSource, *, layer_name: str, max_bytes: int, max_header_bytes: int
    ):
        self._chunks = chunks
        self._layer_name = layer_name
        self._max_bytes = max_bytes
        self._max_header_bytes = max_header_bytes
        self._view = _EMPTY_VIEW
        self._pos = 0
        self.count = 0
        # Bytes from the position to the next header. Reading a member's content past its
        # data makes this negative, which tarfile reports as a seek backwards.
        self._data_left = 0
        self._at_start = True
        self._fields = _FieldCache()
        self.global_headers: dict[str, str] = {}

    # -- reading the stream ---------------------------------------------------------------------

    def _refill(self) -> bool:
        """Move to the next chunk and return whether the stream had one."""
        self._view = self._chunks.next_chunk()
        self._pos = 0
        self.count += len(self._view)
        if self.count > self._max_bytes:
            raise too_large(self._layer_name, "the uncompressed layer tar", self._max_bytes)
        return bool(self._view)

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (all that are left if negative), fewer at the end."""
        parts = []
        while size:
            available = len(self._view) - self._pos
            if not available:
                if not self._refill():
                    break
                continue
            take = available if size < 0 else min(size, available)
            parts.append(self._view[self._pos : self._pos + take].tobytes())
            self._pos += take
            if size > 0:
                size -= take
        return b"".join(parts)

    @property
    def position(self) -> int:
        """The number of stream bytes before the next one to be taken."""
        return self.count - len(self._view) + self._pos

    def _skip(self, size: int) -> None:
        available = len(self._view) - self._pos
        if size > available:
            # Past the current chunk, a source that can skip passes over the rest unread.
            skipped = self._chunks.skip(size - available)
            if skipped is not None:
                self._view = _EMPTY_VIEW
                self._pos = 0
                self.count += skipped
                if self.count > self._max_bytes:
                    raise too_large(self._layer_name, "the uncompressed layer tar", self._max_bytes)
                if skipped < size - available:
                    raise TarReadError("unexpected end of data")
                return
        while size:
            available = len(self._view) - self._pos
            if not available:
                if not self._refill():
                    raise TarReadError("unexpected end of data")
                continue
            take = min(size, available)
            self._pos += take
            size -= take

    def at_end(self) -> bool:
        """Return whether the stream has no bytes left."""
        return self._pos == len(self._view) and not self._refill()

    def drain(self) -> None:
        """Read the rest of the stream, counting it, and drop it."""
        self._pos = len(self._view)
        while self._refill():
            pass

    def content_at_once(self, size: int) -> memoryview | None:
        """Take the next ``size`` bytes as one slice if the current chunk contains them all.

        Returns None, taking nothing, if it does not. The slice is valid until the next chunk.
        """
        end = self._pos + size
        if end > len(self._view) or size < 0:
            return None
        start = self._pos
        self._pos = end
        self._data_left -= size
        return self._view[start:end]

    def content(self, size: int) -> Iterator[memoryview]:
        """Yield the next ``size`` bytes as slices that are valid until the next one is taken.

        Raises TarReadError if the stream ends first.
        """
        if size < 0:
            raise TarReadError(f"negative size {size}")
        while size:
            available = len(self._view) - self._pos
            if not available:
                if not self._refill():
                    raise TarReadError("unexpected end of data")
                continue
            take = min(size, available)
            start = self._pos
            self._pos += take
            self._data_left -= take
            size -= take
            yield self._view[start : start + take]

    # -- headers --------------------------------------------------------------------------------

    def next_header(self) -> TarHeader | None:
        """Skip to the next member and return its header, or None at the end of the archive.

        Raises TarReadError for a corrupt or truncated archive and HandOver for a member this
        reader leaves to tarfile.
        """
        data_left = self._data_left
        if data_left < 0:
            raise TarReadError("seeking backwards is not allowed")
        if self._pos + data_left <= len(self._view):
            self._pos += data_left
        else:
            self._skip(data_left)
        self._data_left = 0
        extensions: list[tuple[bytes, bytes | dict[str, str]]] = []
        replay: list[bytes] = []
        globals_before: dict[str, str] | None = None
        # After an extension header, tarfile reads the next header as a subsequent one, where
        # any problem is an error and not the end of the archive.
        subsequent = False
        header_bytes = 0
        while True:
            end = self._pos + BLOCK
            if end <= len(self._view):
                # The whole block is in the current chunk: parse it there, without a copy.
                block: bytes | memoryview = self._view[self._pos : end]
                self._pos = end
            else:
                block = self.read(BLOCK)
            header_bytes += BLOCK
            try:
                header, prefix = _parse_block(block, self._fields)
            except TarReadError as exc:
                self._check_header_error(exc, subsequent)
                return None
            if header is None:
                # A zero block: the end-of-archive marker.
                if subsequent:
                    raise TarReadError("end of file header", at_start=self._at_start)
                return None
            kind = header.type
            if kind not in _EXTENSION_TYPES:
                break
            block = bytes(block)
            if len(replay) >= 2 * MAX_EXTENSION_HEADERS:
                raise self._hand_over([*replay, block], globals_before)
            size = _block_size(header.size, self._at_start)
            header_bytes += size
            if header_bytes > self._max_header_bytes:
                raise self._hostile(
                    f"a tar header with its PAX or GNU extension records is larger than "
                    f"{self._max_header_bytes} bytes"
                )
            data = self.read(size)
            if len(data) != size:
                raise TarReadError("unexpected end of data", at_start=self._at_start)
            replay += (block, data)
            if kind in _LONG_TYPES:
                extensions.append((kind, data))
                subsequent = True
                continue
            try:
                records = _parse_pax(data)
            except TarReadError as exc:
                self._check_header_error(exc, subsequent)
                return None
            if any(key.startswith(_SPARSE_PREFIX) for key in records):
                raise self._hand_over(replay, globals_before)
            if kind == tarfile.XGLTYPE:
                if globals_before is None:
                    globals_before = dict(self.global_headers)
                self.global_headers.update(records)
            else:
                merged = self.global_headers.copy()
                merged.update(records)
                extensions.append((kind, merged))
            subsequent = True
        if kind == tarfile.GNUTYPE_SPARSE:
            raise self._hand_over([*replay, bytes(block)], globals_before)
        if prefix:
            header.name = prefix + "/" + header.name
        if extensions or self.global_headers:
            self._data_left = self._apply(header, extensions)
        else:
            # What _apply does for a member without extension or global records.
            header.pax_headers = {}
            if header.type == tarfile.DIRTYPE:
                header.name = header.name.rstrip("/")
            self._data_left = _data_size(header)
        self._at_start = False
        return header

    def _apply(
        self, header: TarHeader, extensions: list[tuple[bytes, bytes | dict[str, str]]]
    ) -> int:
        """Apply global and extension records as tarfile does; return the data size to skip.

        tarfile processes a member's headers by recursion, so the first extension header is
        applied last and wins.
        """
        data_size = _data_size(header)
        header.pax_headers = self.global_headers.copy()
        if self.global_headers:
            _apply_pax(header, self.global_headers)
        if header.type == tarfile.DIRTYPE:
            header.name = header.name.rstrip("/")
        for kind, value in reversed(extensions):
            if isinstance(value, dict):
                _apply_pax(header, value)
                header.pax_headers = value.copy()
                if "size" in value:
                    data_size = _data_size(header)
                continue
            if kind == tarfile.GNUTYPE_LONGNAME:
                header.name = _text(value)
            else:
                header.linkname = _text(value)
            if header.type == tarfile.DIRTYPE:
                header.name = header.name.removesuffix("/")
        return data_size

    def _check_header_error(self, exc: TarReadError, subsequent: bool) -> None:
        """Raise for an invalid header where tarfile raises; elsewhere it ends the archive."""
        if subsequent or self._at_start:
            raise TarReadError(str(exc), at_start=self._at_start) from None

    def _hand_over(self, replay: list[bytes], globals_before: dict[str, str] | None) -> HandOver:
        """Return the signal to read on with tarfile from the member whose headers are ``replay``.

        ``globals_before`` is None unless the member's own headers changed the global records.
        """
        return HandOver(
            b"".join(replay),
            dict(self.global_headers) if globals_before is None else globals_before,
        )

    def _hostile(self, problem: str) -> UnsafeLayerError:
        return UnsafeLayerError(
            f"{self._layer_name}: {problem}; the layer is malformed or hostile, "
            "do not use this image"
        )


def too_large(layer_name: str, subject: str, max_bytes: int) -> UnsafeLayerError:
    """Return the error for a layer whose ``subject``, such as its tar, exceeds ``max_bytes``."""
    return UnsafeLayerError(
        f"{layer_name}: {subject} would expand to more than {max_bytes} bytes, the limit "
        f"{LAYER_SIZE_VARIABLE} sets; the layer may be a decompression bomb, or raise the "
        "limit if the image is genuine"
    )


def _block_size(size: int, at_start: bool) -> int:
    if size < 0:
        raise TarReadError(f"negative size {size} in an extension header", at_start=at_start)
    return -(-size // BLOCK) * BLOCK


def _data_size(header: TarHeader) -> int:
    """Return the bytes of data after the header, which tarfile skips to reach the next one."""
    if header.type in _TYPES_WITHOUT_DATA:
        return 0
    return -(-header.size // BLOCK) * BLOCK


def _text(field: bytes) -> str:
    return field.partition(b"\0")[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """Decode a numeric field: octal text, or base-256 when the first byte is 0x80 or 0xff."""
    lead = field[0]
    if lead in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        if lead == 0o377:
            value -= 256 ** (len(field) - 1)
        return value
    try:
        # int() accepts ASCII bytes and strips fewer kinds of white space than str.strip().
        # Where it succeeds it returns what the decoding below returns.
        return int(field.partition(b"\0")[0], 8)
    except ValueError:
        pass
    try:
        text = field.partition(b"\0")[0].decode("ascii").strip()
        return int(text, 8) if text else 0
    except ValueError:  # UnicodeDecodeError is a ValueError
        raise TarReadError("invalid header") from None


def _byte_sum(block: bytes | memoryview) -> int:
    """Return the unsigned ustar checksum of ``block``: its bytes summed, the checksum as spaces.

    The low half of Adler-32 is 1 plus the byte sum modulo 65521. A piece of at most 256 bytes
    sums to at most 65280, so the modulo never applies and the sum is exact. Three such pieces
    are far quicker than ``sum()`` over the bytes.
    """
    return (
        (zlib.adler32(block[:148]) & 0xFFFF)
        + (zlib.adler32(block[156:412]) & 0xFFFF)
        + (zlib.adler32(block[412:]) & 0xFFFF)
        - 3
        + 256
    )


class _FieldCache:
    """Decoded header fields by their raw bytes, for the values that repeat across members.

    Modes, owners, times, user names and empty link names take few distinct values in a
    layer, and a dictionary lookup is several times quicker than decoding. Each cache stops
    growing at :data:`_CACHE_LIMIT` values, so memory stays bounded. A field that does not
    decode raises TarReadError every time, because errors are not cached.
    """

    def __init__(self) -> None:
        self.numbers: dict[bytes, int] = {}
        self.texts: dict[bytes, str] = {}
        self.ids: dict[bytes, tuple[int, int, int]] = {}
        self.owners: dict[bytes, tuple[str, str, int, int]] = {}

    def number(self, field: bytes) -> int:
        value = self.numbers.get(field)
        if value is None:
            value = _number(field)
            if len(self.numbers) < _CACHE_LIMIT:
                self.numbers[field] = value
        return value

    def text(self, field: bytes) -> str:
        value = self.texts.get(field)
        if value is None:
            value = _text(field)
            if len(self.texts) < _CACHE_LIMIT:
                self.texts[field] = value
        return value

    def mode_uid_gid(self, field: bytes) -> tuple[int, int, int]:
        """Decode the 24 bytes of mode, uid and gid."""
        value = self.ids.get(field)
        if value is None:
            value = (_number(field[:8]), _number(field[8:16]), _number(field[16:]))
            if len(self.ids) < _CACHE_LIMIT:
                self.ids[field] = value
        return value

    def names_and_device(self, field: bytes) -> tuple[str, str, int, int]:
        """Decode the 88 bytes from magic to devminor into uname, gname, devmajor, devminor."""
        value = self.owners.get(field)
        if value is None:
            # magic (6 bytes) and version (2) are skipped, as tarfile skips them.
            value = (
                _text(field[8:40]),
                _text(field[40:72]),
                _number(field[72:80]),
                _number(field[80:]),
            )
            if len(self.owners) < _CACHE_LIMIT:
                self.owners[field] = value
        return value


_CACHE_LIMIT = 4096


def _parse_block(block: bytes | memoryview, fields: _FieldCache) -> tuple[TarHeader | None, str]:
    """Parse one header block; return (None, "") for a zero block, else the header and prefix.

    Raises TarReadError for an empty, short or invalid block.
    """
    if len(block) != BLOCK:
        raise TarReadError("truncated header" if block else "empty header")
    # A block whose name starts with a byte other than NUL is not a zero block.
    if not block[0] and bytes(block) == _ZERO_BLOCK:
        return None, ""
    (
        name,
        ids,
        size,
        mtime,
        checksum,
        kind,
        linkname,
        owners,
        prefix,
    ) = _FIELDS.unpack(block)
    expected = _number(checksum)
    if expected != _byte_sum(block) and expected != 256 + sum(_SIGNED_BYTES.unpack(block)):
        raise TarReadError("bad checksum")
    header = TarHeader()
    header.name = _text(name)
    header.mode, header.uid, header.gid = fields.mode_uid_gid(ids)
    header.size = _number(size)
    header.mtime = fields.number(mtime)
    header.type = kind
    header.linkname = fields.text(linkname)
    header.uname, header.gname, header.devmajor, header.devminor = fields.names_and_device(owners)
    # Old tar writes a directory as a regular file whose name ends in a slash.
    if kind == tarfile.AREGTYPE and header.name.endswith("/"):
        header.type = tarfile.DIRTYPE
    if header.type == tarfile.DIRTYPE:
        header.name = header.name.rstrip("/")
    return header, fields.text(prefix)


def _parse_pax(data: bytes) -> dict[str, str]:
    """Parse PAX records (``"%d %s=%s\\n" % (length, keyword, value)``) as tarfile does."""
    records: dict[str, str] = {}
    match = _PAX_CHARSET.search(data)
    if match is not None:
        try:
            records["hdrcharset"] = match.group(1).decode("utf-8")
        except UnicodeDecodeError:
            raise TarReadError("invalid PAX record: hdrcharset is not UTF-8") from None
    pos = 0
    while match := _PAX_RECORD.match(data, pos):
        length = int(match.group(1))
        if length == 0:
            raise TarReadError("invalid header")
        keyword = match.group(2).decode("utf-8", "surrogateescape")
        value = data[match.end(2) + 1 : match.start(1) + length - 1]
        # tarfile decodes strictly as UTF-8 first and then with the archive's encoding and
        # error handler, UTF-8 and surrogateescape for layers, which comes to the same thing.
        records[keyword] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _apply_pax(header: TarHeader, records: dict[str, str]) -> None:
    """Override header fields with the PAX records that tarfile applies."""
    for keyword, value in records.items():
        if keyword == "path":
            header.name = value.rstrip("/")
        elif keyword == "linkpath":
            header.linkname = value
        elif keyword == "size":
            header.size = _int_or_zero(value)
        elif keyword == "mtime":
            try:
                header.mtime = float(value)
            except ValueError:
                header.mtime = 0
        elif keyword == "uid":
            header.uid = _int_or_zero(value)
        elif keyword == "gid":
            header.gid = _int_or_zero(value)
        elif keyword == "uname":
            header.uname = value
        elif keyword == "gname":
            header.gname = value


def _int_or_zero(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
