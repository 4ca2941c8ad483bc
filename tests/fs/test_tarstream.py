"""TarStream against tarfile: the same headers, contents and errors for the same bytes.

Every synthetic case in tests/fs/tricky_tars.py is read by both parsers, at chunk sizes from
one byte up, so that headers, PAX records and contents fall across chunk boundaries. The
header fields compared are those of tarfile.TarInfo (Python 3.11.7) that safetar uses.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
import tarfile
import threading
import tracemalloc

import pytest

from edgetrim.errors import ImageFormatError, UnsafeLayerError
from edgetrim.fs import safetar
from edgetrim.fs.chunks import (
    CHUNK_SIZE,
    READ_AHEAD_BUFFERS,
    READ_AHEAD_CHUNK_SIZE,
    BlockingChunks,
    ReadAheadChunks,
)
from edgetrim.fs.limits import LayerLimits
from edgetrim.fs.safetar import LayerReader, TarMember, Whiteout
from edgetrim.fs.tarstream import HandOver, TarReadError, TarStream, _byte_sum
from tests.fs import tricky_tars
from tests.fs.layers import build_tar, reg

CASES = tricky_tars.all_cases()
CHUNK_SIZES = [1, 7, 512, 1000, 4096, CHUNK_SIZE]
# Members these cases contain that TarStream leaves to tarfile.
HANDED_OVER = {"gnu sparse", "pax sparse 0.1", "pax sparse 1.0", "chain of 80 extension headers"}
FIELDS = (
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


def tarfile_headers(data: bytes) -> tuple[list[tuple], str | None]:
    """Read ``data`` with tarfile in stream mode: (fields, content) per member, then the error.

    The error is "start" when opening fails, "later" when a later header or content does.
    """
    found: list[tuple] = []
    try:
        tar = tarfile.open(  # noqa: SIM115 - closed below, after the members are read
            fileobj=io.BytesIO(data), mode="r|", encoding="utf-8", errors="surrogateescape"
        )
    except tarfile.TarError:
        return found, "start"
    with tar:
        try:
            for info in tar:
                content = tar.extractfile(info).read() if info.isreg() else None  # type: ignore[union-attr]
                found.append((tuple(getattr(info, name) for name in FIELDS), content))
        except tarfile.TarError:
            return found, "later"
    return found, None


def fast_headers(data: bytes, chunk_size: int) -> tuple[list[tuple], str | None]:
    """Read ``data`` with TarStream, in the same form as :func:`tarfile_headers`."""
    stream = TarStream(
        BlockingChunks(io.BytesIO(data), chunk_size),
        layer_name="test",
        max_bytes=1 << 40,
        max_header_bytes=1 << 24,
    )
    found: list[tuple] = []
    try:
        while (header := stream.next_header()) is not None:
            content = None
            if header.isreg():
                content = b"".join(bytes(chunk) for chunk in stream.content(header.size))
            found.append((tuple(getattr(header, name) for name in FIELDS), content))
    except TarReadError as exc:
        return found, "start" if exc.at_start else "later"
    return found, None


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("case", sorted(set(CASES) - HANDED_OVER))
def test_headers_match_tarfile(case: str, chunk_size: int) -> None:
    data = CASES[case]
    expected_members, expected_error = tarfile_headers(data)
    members, error = fast_headers(data, chunk_size)
    assert members == expected_members
    assert error == expected_error


@pytest.mark.parametrize("case", sorted(HANDED_OVER & set(CASES)))
def test_unusual_members_handed_over(case: str) -> None:
    stream = TarStream(
        BlockingChunks(io.BytesIO(CASES[case])),
        layer_name="test",
        max_bytes=1 << 40,
        max_header_bytes=1 << 24,
    )
    with pytest.raises(HandOver) as caught:
        while stream.next_header() is not None:
            pass
    assert caught.value.replay[:512] != bytes(512)
    assert len(caught.value.replay) % 512 == 0


def layer_outcome(read, data: bytes) -> tuple[list, tuple[type, str] | None]:
    """Iterate a layer with ``read`` and hash every file: the items, then the error if any."""
    items: list = []
    try:
        for item in read(io.BytesIO(data), layer_index=2, layer_name="layer L"):
            if isinstance(item, TarMember):
                if item.entry.is_regular:
                    item.read_content()
                items.append(item.entry)
            else:
                items.append(item)
    except (ImageFormatError, UnsafeLayerError) as exc:
        return items, (type(exc), str(exc))
    return items, None


@pytest.mark.parametrize("chunk_size", [1, 511, 4096, CHUNK_SIZE])
@pytest.mark.parametrize("case", sorted(CASES))
def test_entries_match_tarfile(case: str, chunk_size: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        safetar, "BlockingChunks", functools.partial(BlockingChunks, chunk_size=chunk_size)
    )
    data = CASES[case]
    expected_items, expected_error = layer_outcome(safetar._iter_layer_with_tarfile, data)
    items, error = layer_outcome(safetar.iter_layer, data)
    assert items == expected_items
    assert error == expected_error


@pytest.mark.parametrize("read", [safetar.iter_layer, safetar._iter_layer_with_tarfile])
@pytest.mark.parametrize(
    "data", [tricky_tars.invalid_hdrcharset(), tricky_tars.invalid_sparse_map()]
)
def test_invalid_pax_records_rejected(read, data: bytes) -> None:
    # tarfile raises ValueError for these, which must not escape as it is.
    items, error = layer_outcome(read, data)
    assert error is not None
    assert error[0] is ImageFormatError
    assert "layer L" in error[1]
    assert "invalid PAX record" in error[1]


def test_sparse_member_contents_after_hand_over() -> None:
    for name in ("gnu sparse", "pax sparse 0.1", "pax sparse 1.0"):
        if name not in CASES:
            pytest.skip("GNU tar is not installed; it writes the sparse test layers")
        items, error = layer_outcome(safetar.iter_layer, CASES[name])
        assert error is None
        digests = {entry.path: entry.digest for entry in items}
        sparse = bytearray(1 << 20)
        sparse[:5] = b"start"
        sparse += b"end"
        assert digests["/a.txt"] == hashlib.sha256(b"before").hexdigest(), name
        assert digests["/m-sparse.img"] == hashlib.sha256(sparse).hexdigest(), name
        assert digests["/z.txt"] == hashlib.sha256(b"after").hexdigest(), name


def test_byte_sum_matches_plain_sum() -> None:
    generator = random.Random(7)
    blocks = [bytes(512), b"\xff" * 512, bytes(range(256)) * 2]
    blocks += [generator.randbytes(512) for _ in range(500)]
    for block in blocks:
        assert _byte_sum(block) == 256 + sum(block[:148]) + sum(block[156:])


def test_signed_checksum_accepted() -> None:
    # Some old tars sum the header as signed chars; tarfile accepts either sum.
    name = "\xe9t\xe9".encode("latin-1").decode("utf-8", "surrogateescape")
    block = bytearray(tricky_tars.header(name, tarfile.REGTYPE))
    signed = 256 + sum(b - 256 if b > 127 else b for b in block[:148] + block[156:])
    block[148:156] = b"%06o\0 " % (signed & 0o777777)
    data = bytes(block) + tricky_tars.END
    assert tarfile_headers(data) == fast_headers(data, CHUNK_SIZE)
    assert fast_headers(data, CHUNK_SIZE)[0][0][0][0] == name


class SkippingStream(io.BytesIO):
    """A BytesIO with ``skip``, as a stream read in place has; it counts what it skipped."""

    skipped = 0

    def skip(self, size: int) -> int:
        size = min(size, len(self.getbuffer()) - self.tell())
        self.seek(size, io.SEEK_CUR)
        self.skipped += size
        return size


def file_offsets(data: bytes, stream: io.BytesIO, *, read_ahead: bool) -> list:
    """Read no file's content, as the in-place scan does: (path, offset) of every file."""
    found = []
    reader = LayerReader(stream, layer_index=0, layer_name="l", read_ahead=read_ahead)
    for item in reader:
        if isinstance(item, TarMember) and item.entry.is_regular:
            found.append((item.entry.path, item.offset))
    assert reader.bytes_read == len(data)
    return found


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.parametrize("chunk_size", [512, 700, CHUNK_SIZE])
def test_offsets_and_skipped_content(
    chunk_size: int, read_ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, factory in (("BlockingChunks", BlockingChunks), ("ReadAheadChunks", ReadAheadChunks)):
        monkeypatch.setattr(safetar, name, functools.partial(factory, chunk_size=chunk_size))
    big = bytes(range(256)) * 5000
    data = build_tar(reg("big", big), reg("tiny", b"ab"), reg("empty", b""))[
        :-1024
    ] + tricky_tars.many_small_files(50)
    contents = tar_contents(data)
    plain = file_offsets(data, io.BytesIO(data), read_ahead=read_ahead)
    skipping = SkippingStream(data)
    assert file_offsets(data, skipping, read_ahead=read_ahead) == plain
    assert [path for path, _ in plain] == [path for path, _ in contents]
    for (path, offset), (_, content) in zip(plain, contents, strict=True):
        assert data[offset : offset + len(content)] == content, path
    # Without read-ahead, most of the big file is passed over unread. The read-ahead thread
    # has read it already.
    if read_ahead:
        assert skipping.skipped == 0
    else:
        assert len(big) - 2 * chunk_size < skipping.skipped < len(data)


@pytest.mark.parametrize("chunk_size", [700, 4096, CHUNK_SIZE])
def test_content_at_once_or_streamed(chunk_size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        safetar, "BlockingChunks", functools.partial(BlockingChunks, chunk_size=chunk_size)
    )
    data = tricky_tars.many_small_files(120)
    at_once = streamed = 0
    found = []
    for item in LayerReader(io.BytesIO(data), layer_index=0, layer_name="l"):
        if isinstance(item, TarMember) and item.entry.is_regular:
            view = item.content_at_once()
            if view is None:
                streamed += 1
                out = io.BytesIO()
                item.read_content(out)
                found.append((item.entry.path, out.getvalue()))
            else:
                at_once += 1
                found.append((item.entry.path, bytes(view)))
                # Taken once: the content is not handed out a second time.
                with pytest.raises(ValueError, match="was read already"):
                    item.read_content()
    assert found == tar_contents(data)
    assert at_once > 0
    if chunk_size < 2000:
        # Files larger than a chunk never fit in one.
        assert streamed > 0


def test_skip_past_the_end_is_truncation() -> None:
    data = build_tar(reg("big", b"x" * 100_000))[:20_000]
    reader = LayerReader(SkippingStream(data), layer_index=0, layer_name="l")
    with pytest.raises(ImageFormatError, match="corrupt or truncated|unexpected end"):
        # The big file's content is skipped, past the end of the stream.
        list(reader)


def tar_contents(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [
            ("/" + info.name, tar.extractfile(info).read())  # type: ignore[union-attr]
            for info in tar
            if info.isreg()
        ]


@pytest.mark.parametrize("read_ahead", [False, True])
def test_limits_in_fast_path(read_ahead: bool) -> None:
    tar = build_tar(reg("a", b"a" * 5000), reg("b", b"b" * 5000), reg(".wh.c"))

    def read(limits: LayerLimits) -> list:
        reader = LayerReader(
            io.BytesIO(tar), layer_index=0, layer_name="l", limits=limits, read_ahead=read_ahead
        )
        return [item for item in reader]

    assert len(read(LayerLimits(max_bytes=len(tar), max_entries=3))) == 3
    with pytest.raises(UnsafeLayerError, match="more than 2 entries"):
        read(LayerLimits(max_entries=2))
    with pytest.raises(UnsafeLayerError, match="uncompressed layer tar would expand"):
        read(LayerLimits(max_bytes=len(tar) - 1))


def test_header_budget_in_fast_path() -> None:
    tar = build_tar(reg("f", b"", xattrs={"user.big": b"v" * 8000}))
    limits = LayerLimits(max_header_bytes=4096)
    with pytest.raises(UnsafeLayerError, match="larger than 4096 bytes"):
        list(LayerReader(io.BytesIO(tar), layer_index=0, layer_name="l", limits=limits))


def test_empty_layer_read_ahead() -> None:
    reader = LayerReader(io.BytesIO(b""), layer_index=0, layer_name="l", read_ahead=True)
    assert list(reader) == []
    assert reader.bytes_read == 0


def test_bytes_read_counts_trailing_data() -> None:
    data = tricky_tars.garbage_after_end()
    reader = LayerReader(io.BytesIO(data), layer_index=0, layer_name="l")
    assert [type(item) for item in reader] == [TarMember]
    assert reader.bytes_read == len(data)


def test_whiteout_items_from_fast_path() -> None:
    items, error = layer_outcome(safetar.iter_layer, tricky_tars.whiteouts())
    assert error is None
    assert items[:2] == [Whiteout("/etc/motd"), Whiteout("/var/cache", opaque=True)]


class ZeroLayer:
    """A layer tar with one file of ``size`` zero bytes, generated while it is read."""

    def __init__(self, size: int):
        info = tarfile.TarInfo("big.img")
        info.size = size
        self._header = info.tobuf(tarfile.PAX_FORMAT)
        self._zeros = size + (-size % 512) + 1024

    def read(self, size: int = -1) -> bytes:
        if self._header:
            data, self._header = self._header[:size], self._header[size:]
            return data
        count = min(size, self._zeros)
        self._zeros -= count
        return bytes(count)


def test_read_ahead_memory_bounded() -> None:
    size = 128 << 20
    tracemalloc.start()
    try:
        reader = LayerReader(ZeroLayer(size), layer_index=0, layer_name="l", read_ahead=True)  # type: ignore[arg-type]
        for item in reader:
            assert isinstance(item, TarMember)
            digest = item.read_content()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256(bytes(size)).hexdigest()
    assert digest == expected
    # The read-ahead buffers and a few MiB more, however large the file.
    limit = READ_AHEAD_BUFFERS * READ_AHEAD_CHUNK_SIZE + (8 << 20)
    assert limit < size
    assert peak < limit, f"peak Python memory {peak} bytes while hashing a {size}-byte file"


def test_read_ahead_error_raised_in_caller() -> None:
    class Failing:
        def read(self, size: int = -1) -> bytes:
            raise OSError("disk on fire")

    chunks = ReadAheadChunks(Failing())  # type: ignore[arg-type]
    with pytest.raises(OSError, match="disk on fire"):
        chunks.next_chunk()
    assert chunks.next_chunk() == b""
    chunks.close()


def test_read_ahead_stops_when_closed_early() -> None:
    class Endless:
        def read(self, size: int = -1) -> bytes:
            return b"x" * size

    chunks = ReadAheadChunks(Endless(), chunk_size=1024, buffers=2)  # type: ignore[arg-type]
    assert bytes(chunks.next_chunk()) == b"x" * 1024
    chunks.close()
    assert not any(thread.name == "layer-read-ahead" for thread in threading.enumerate())
