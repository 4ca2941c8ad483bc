"""safetar: name cleaning, escapes, tar dialects, xattrs, special files and content hashing."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from edgetrim.errors import ImageFormatError, UnsafeLayerError
from edgetrim.fs.entry import FileType
from edgetrim.fs.safetar import TarMember, Whiteout, clean_path, iter_layer
from tests.fs.layers import (
    CAPABILITY,
    MTIME,
    build_tar,
    device,
    directory,
    fifo,
    hardlink,
    reg,
    symlink,
    whiteout,
)


class OneWayStream:
    """A non-seekable stream, as a decompressor or a network download gives."""

    def __init__(self, data: bytes):
        self._buffer = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(size)


def read_all(tar: bytes, layer_name: str = "test layer") -> list[TarMember | Whiteout]:
    """Iterate a layer, reading every regular file's content, and return the items."""
    items = []
    for item in iter_layer(OneWayStream(tar), layer_index=3, layer_name=layer_name):  # type: ignore[arg-type]
        if isinstance(item, TarMember) and item.entry.is_regular:
            item.read_content()
        items.append(item)
    return items


def entries(tar: bytes) -> dict:
    return {item.entry.path: item.entry for item in read_all(tar) if isinstance(item, TarMember)}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("./usr//bin/", "/usr/bin"),
        ("/etc/passwd", "/etc/passwd"),
        ("a/./b", "/a/b"),
        ("a/../b", "/b"),
        ("./", "/"),
        (".", "/"),
        ("//", "/"),
    ],
)
def test_clean_path_normalizes(name: str, expected: str) -> None:
    assert clean_path(name, layer_name="layer") == expected


@pytest.mark.parametrize("name", ["..", "../etc/passwd", "a/../../b", "./a/b/../../../c"])
def test_clean_path_rejects_escape(name: str) -> None:
    with pytest.raises(UnsafeLayerError, match="points outside the image root"):
        clean_path(name, layer_name="layer")


def test_absolute_and_dotted_names_normalized() -> None:
    tar = build_tar(reg("/etc/passwd", b"root"), reg("./usr//lib/./x", b"x"), directory("./"))
    assert set(entries(tar)) == {"/etc/passwd", "/usr/lib/x", "/"}


def test_dotdot_escape_names_layer_and_entry() -> None:
    tar = build_tar(reg("ok", b""), reg("../../etc/cron.d/evil", b"boom"))
    with pytest.raises(UnsafeLayerError) as caught:
        read_all(tar, layer_name="layer sha256:abc")
    assert "layer sha256:abc" in str(caught.value)
    assert "../../etc/cron.d/evil" in str(caught.value)


def test_hardlink_target_escape_rejected() -> None:
    tar = build_tar(hardlink("shadow", "../../etc/shadow"))
    with pytest.raises(UnsafeLayerError) as caught:
        read_all(tar)
    assert "'shadow'" in str(caught.value)
    assert "../../etc/shadow" in str(caught.value)


def test_hardlink_target_normalized() -> None:
    tar = build_tar(reg("bin/busybox", b"elf"), hardlink("bin/sh", "./bin//busybox"))
    link = entries(tar)["/bin/sh"]
    assert link.type is FileType.HARDLINK
    assert link.link_target == "/bin/busybox"


def test_regular_file_metadata_and_digest() -> None:
    data = b"#!/bin/sh\necho hi\n"
    tar = build_tar(
        reg("usr/bin/hi", data, mode=0o4755, uid=1000, gid=50, uname="app", gname="staff")
    )
    entry = entries(tar)["/usr/bin/hi"]
    assert entry.type is FileType.REGULAR
    assert entry.mode == 0o4755
    assert (entry.uid, entry.gid, entry.uname, entry.gname) == (1000, 50, "app", "staff")
    assert entry.mtime == MTIME
    assert entry.size == len(data)
    assert entry.digest == hashlib.sha256(data).hexdigest()
    assert entry.layer == 3


def test_read_content_copies_and_hashes() -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    tar = build_tar(reg("blob", data))
    out = io.BytesIO()
    for item in iter_layer(OneWayStream(tar), layer_index=0, layer_name="l"):  # type: ignore[arg-type]
        assert isinstance(item, TarMember)
        digest = item.read_content(out)
    assert out.getvalue() == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_read_content_only_once() -> None:
    tar = build_tar(reg("a", b"x"))
    for item in iter_layer(io.BytesIO(tar), layer_index=0, layer_name="l"):
        assert isinstance(item, TarMember)
        item.read_content()
        with pytest.raises(ValueError, match="read already"):
            item.read_content()


def test_skipped_content_does_not_break_stream() -> None:
    tar = build_tar(reg("a", b"a" * 5000), reg("b", b"bbb"))
    seen = []
    for item in iter_layer(io.BytesIO(tar), layer_index=0, layer_name="l"):
        assert isinstance(item, TarMember)
        seen.append(item)
        if item.entry.path == "/b":
            assert item.read_content() == hashlib.sha256(b"bbb").hexdigest()
    with pytest.raises(ValueError):
        seen[0].read_content()


def test_xattrs_from_pax_records() -> None:
    xattrs = {"security.capability": CAPABILITY, "user.note": "héllo".encode()}
    tar = build_tar(reg("usr/bin/ping", b"elf", mode=0o755, xattrs=xattrs))
    assert entries(tar)["/usr/bin/ping"].xattrs == xattrs


def test_binary_xattr_invalid_utf8() -> None:
    value = b"\xff\xfe\x00\x80binary"
    tar = build_tar(reg("f", b"", xattrs={"user.raw": value}))
    assert entries(tar)["/f"].xattrs == {"user.raw": value}


def test_libarchive_xattr_records() -> None:
    info, data = reg("f", b"")
    info.pax_headers = {"LIBARCHIVE.xattr.user.odd%20name": "aGVsbG8"}  # base64 of "hello"
    assert entries(build_tar((info, data)))["/f"].xattrs == {"user.odd name": b"hello"}


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names(tar_format: int) -> None:
    name = "d/" + "n" * 150
    target = "t/" + "x" * 140
    tar = build_tar(reg(name, b"1"), symlink("s", target), tar_format=tar_format)
    found = entries(tar)
    assert found["/" + name].size == 1
    assert found["/s"].link_target == target


def test_ustar_prefix_name() -> None:
    name = "p" * 90 + "/" + "q" * 60  # 151 bytes, stored split into prefix and name
    tar = build_tar(reg(name, b"z"), tar_format=tarfile.USTAR_FORMAT)
    assert list(entries(tar)) == ["/" + name]


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_non_utf8_names_kept(tar_format: int) -> None:
    name = b"caf\xe9/men\xfc.txt".decode("utf-8", "surrogateescape")
    tar = build_tar(reg(name, b"latin-1"), tar_format=tar_format)
    (path,) = entries(tar)
    assert path == "/" + name
    assert os.fsencode(path) == b"/caf\xe9/men\xfc.txt"


def test_device_nodes_and_fifo() -> None:
    tar = build_tar(
        device("dev/null", tarfile.CHRTYPE, 1, 3),
        device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        fifo("run/initctl", mode=0o600),
    )
    found = entries(tar)
    null, loop, pipe = found["/dev/null"], found["/dev/loop0"], found["/run/initctl"]
    assert (null.type, null.devmajor, null.devminor, null.mode) == (
        FileType.CHAR_DEVICE,
        1,
        3,
        0o666,
    )
    assert (loop.type, loop.devmajor, loop.devminor) == (FileType.BLOCK_DEVICE, 7, 0)
    assert (pipe.type, pipe.mode) == (FileType.FIFO, 0o600)


def test_symlink_target_kept_as_written() -> None:
    tar = build_tar(symlink("lib", "usr/lib"), symlink("etc/mtab", "/proc/self/mounts"))
    found = entries(tar)
    assert found["/lib"].link_target == "usr/lib"
    assert found["/etc/mtab"].link_target == "/proc/self/mounts"


def test_empty_symlink_target_rejected() -> None:
    with pytest.raises(UnsafeLayerError, match="empty target"):
        read_all(build_tar(symlink("broken", "")))


def test_whiteout_markers() -> None:
    tar = build_tar(
        whiteout("etc/.wh.motd"),
        whiteout("var/cache/.wh..wh..opq"),
        whiteout(".wh.opt"),
        reg(".wh..wh.plnk/123.456", b"aufs"),
        directory(".wh..wh.aufs"),
    )
    assert read_all(tar) == [
        Whiteout("/etc/motd"),
        Whiteout("/var/cache", opaque=True),
        Whiteout("/opt"),
    ]


@pytest.mark.parametrize("name", ["etc/.wh.", "etc/.wh..", "etc/.wh..."])
def test_whiteout_without_target_rejected(name: str) -> None:
    with pytest.raises(UnsafeLayerError):
        read_all(build_tar(whiteout(name)))


def test_duplicate_members_all_yielded() -> None:
    tar = build_tar(reg("a", b"first"), reg("a", b"second"))
    digests = [item.entry.digest for item in read_all(tar) if isinstance(item, TarMember)]
    assert digests == [hashlib.sha256(b"first").hexdigest(), hashlib.sha256(b"second").hexdigest()]


def test_unsupported_type_rejected() -> None:
    info = tarfile.TarInfo("volume")
    info.type = tarfile.GNUTYPE_LONGNAME.replace(b"L", b"V")  # GNU volume header
    with pytest.raises(UnsafeLayerError, match="unsupported type"):
        read_all(build_tar((info, b""), tar_format=tarfile.GNU_FORMAT))


def test_empty_stream_is_empty_layer() -> None:
    assert read_all(b"") == []


def test_end_of_archive_only() -> None:
    assert read_all(build_tar()) == []


def test_garbage_rejected() -> None:
    with pytest.raises(ImageFormatError, match="not a valid tar"):
        read_all(b"this is not a tar archive at all" * 40)


def test_truncated_tar_rejected() -> None:
    tar = build_tar(reg("a", b"a" * 4096), reg("b", b"b" * 4096))
    with pytest.raises(ImageFormatError, match="corrupt or truncated"):
        read_all(tar[:2048])


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar writes the sparse test layer")
def test_sparse_files_expanded(tmp_path: Path, tar_format: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    data = bytearray(3 << 20)
    data[:5] = b"start"
    data[2 << 20 : (2 << 20) + 6] = b"middle"
    with open(source / "sparse.img", "wb") as out:
        out.write(data[:5])
        out.seek(2 << 20)
        out.write(data[2 << 20 : (2 << 20) + 6])
        out.truncate(len(data))
    archive = tmp_path / "layer.tar"
    subprocess.run(
        ["tar", f"--format={tar_format}", "--sparse", "-cf", str(archive), "-C", str(source), "."],
        check=True,
    )
    tar = archive.read_bytes()
    assert len(tar) < len(data), "GNU tar did not store the file as sparse"
    entry = entries(tar)["/sparse.img"]
    assert entry.type is FileType.REGULAR
    assert entry.size == len(data)
    assert entry.digest == hashlib.sha256(data).hexdigest()


class ZeroFileLayer:
    """A layer tar with one file of ``size`` zero bytes, generated while it is read."""

    def __init__(self, name: str, size: int):
        info = tarfile.TarInfo(name)
        info.size = size
        header = info.tobuf(tarfile.PAX_FORMAT)
        padding = -size % tarfile.BLOCKSIZE
        self._parts = [(header, 0), (b"", size), (bytes(padding + 2 * tarfile.BLOCKSIZE), 0)]

    def read(self, size: int = -1) -> bytes:
        while self._parts:
            data, zeros = self._parts[0]
            if data:
                chunk, rest = (data, b"") if size < 0 else (data[:size], data[size:])
                self._parts[0] = (rest, zeros)
                return chunk
            if zeros:
                count = zeros if size < 0 else min(size, zeros)
                self._parts[0] = (b"", zeros - count)
                return bytes(count)
            self._parts.pop(0)
        return b""


def test_large_file_memory_bounded() -> None:
    size = 256 << 20
    layer = ZeroFileLayer("big.img", size)
    tracemalloc.start()
    try:
        members = iter_layer(layer, layer_index=0, layer_name="big")  # type: ignore[arg-type]
        item = next(members)
        assert isinstance(item, TarMember)
        digest = item.read_content()
        assert next(members, None) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256()
    for _ in range(size >> 20):
        expected.update(bytes(1 << 20))
    assert item.entry.size == size
    assert digest == expected.hexdigest()
    assert peak < 16 << 20, f"peak Python memory {peak} bytes while hashing a {size}-byte file"
