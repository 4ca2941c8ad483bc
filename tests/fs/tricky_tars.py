"""Synthetic tars in the dialects and corner cases that real and crafted layers use.

Each builder returns the bytes of a whole archive. tarfile writes most of them. The helpers
below write headers by hand where tarfile cannot, such as a PAX record that overrides the
ustar size, a chain of extension headers in an unusual order or an invalid record.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.fs.layers import MTIME, build_tar, device, directory, fifo, hardlink, reg, symlink

BLOCK = tarfile.BLOCKSIZE
END = bytes(2 * BLOCK)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def header(name: str, kind: bytes, size: int = 0, **fields: object) -> bytes:
    """One ustar header block for ``name``; ``fields`` set other TarInfo attributes."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mtime = MTIME
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def pax_record(keyword: str, value: bytes) -> bytes:
    """One PAX record, ``"%d %s=%s\\n"``, whose length counts its own digits."""
    body = b" " + keyword.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_header(records: dict[str, bytes], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """An extended (or, with XGLTYPE, global) PAX header with its records."""
    data = b"".join(pax_record(key, value) for key, value in records.items())
    return header("././@PaxHeader", kind, len(data)) + pad(data)


def gnu_long(kind: bytes, text: str) -> bytes:
    """A GNU long name (``L``) or long link target (``K``) header with its data."""
    data = text.encode("utf-8", "surrogateescape") + b"\0"
    return header("././@LongLink", kind, len(data)) + pad(data)


def file_blocks(name: str, data: bytes, **fields: object) -> bytes:
    return header(name, tarfile.REGTYPE, len(data), **fields) + pad(data)


def with_checksum(block: bytes) -> bytes:
    """Return ``block`` with its checksum field recomputed."""
    block = block[:148] + b" " * 8 + block[156:]
    checksum = sum(block)
    return block[:148] + b"%06o\0 " % checksum + block[156:]


def long_names(tar_format: int) -> bytes:
    return build_tar(
        reg("d/" + "n" * 150, b"long"),
        symlink("s", "t/" + "x" * 140),
        hardlink("h" * 120, "d/" + "n" * 150),
        directory("dir/" + "e" * 120 + "/"),
        tar_format=tar_format,
    )


def pax_fields() -> bytes:
    info, data = reg("f", b"0123456789", uid=3_000_000, gid=4_000_000, uname="ü" * 40)
    info.pax_headers = {
        **info.pax_headers,
        "mtime": "1700000000.5",
        "comment": "ignored",
        "atime": "1.5",
    }
    return build_tar(
        (info, data),
        reg("caf\xe9.txt", b"utf8 name"),
        reg("x", b"", xattrs={"security.capability": b"\x01\x00\x00\x02" + bytes(16)}),
        reg("y", b"", xattrs={"user.raw": b"\xff\xfe\x00binary", "user.b": b"v"}),
    )


def libarchive_xattrs() -> bytes:
    info, data = reg("f", b"abc")
    info.pax_headers = {"LIBARCHIVE.xattr.user.odd%20name": "aGVsbG8"}
    return build_tar((info, data))


def pax_size_override() -> bytes:
    """The ustar size field is 0 and a PAX ``size`` record gives the real size."""
    data = b"z" * 3000
    return (
        pax_header({"size": b"3000"})
        + header("big", tarfile.REGTYPE, 0)
        + pad(data)
        + file_blocks("after", b"ok")
        + END
    )


def pax_invalid_numbers() -> bytes:
    """PAX numbers that tarfile turns into 0, and a path with trailing slashes."""
    return (
        pax_header({"uid": b"abc", "mtime": b"soon", "size": b"1e3"})
        + header("f", tarfile.REGTYPE, 0)
        + pax_header({"path": b"some/dir///"})
        + header("ignored", tarfile.DIRTYPE)
        + END
    )


def global_headers() -> bytes:
    """Global records at the start and in the middle apply to every later member."""
    return (
        pax_header({"uname": b"global", "comment": b"git archive"}, tarfile.XGLTYPE)
        + file_blocks("a", b"a")
        + pax_header({"gname": b"group", "mtime": b"12.25"}, tarfile.XGLTYPE)
        + pax_header({"uname": b"local"})
        + file_blocks("b", b"b")
        + file_blocks("c", b"c")
        + END
    )


def extension_chains() -> bytes:
    """GNU and PAX extension headers in both orders; the first header of a chain wins."""
    return (
        gnu_long(tarfile.GNUTYPE_LONGNAME, "from-L-" + "l" * 100)
        + pax_header({"path": b"from-x", "linkpath": b"link-from-x"})
        + header("short", tarfile.SYMTYPE, linkname="t")
        + pax_header({"path": b"x-wins-" + b"p" * 100})
        + gnu_long(tarfile.GNUTYPE_LONGNAME, "from-L-2")
        + header("short2", tarfile.REGTYPE)
        + gnu_long(tarfile.GNUTYPE_LONGLINK, "K-target-" + "k" * 100)
        + gnu_long(tarfile.GNUTYPE_LONGNAME, "L-dir-name///")
        + header("d", tarfile.DIRTYPE)
        + END
    )


def ustar_prefix() -> bytes:
    return build_tar(reg("p" * 90 + "/" + "q" * 60, b"z"), tar_format=tarfile.USTAR_FORMAT)


def old_style_directory() -> bytes:
    """V7 tar writes a directory as a regular file (type NUL) whose name ends in a slash."""
    return header("olddir/", tarfile.AREGTYPE) + file_blocks("olddir/f", b"f") + END


def base256_numbers() -> bytes:
    """GNU format writes numbers too large for octal fields in base 256."""
    return build_tar(
        reg("big-ids", b"x", uid=1 << 30, gid=(1 << 32) - 2),
        reg("old", b"y", mtime=-1),
        reg("future", b"z", mtime=1 << 40),
        tar_format=tarfile.GNU_FORMAT,
    )


def special_files() -> bytes:
    return build_tar(
        device("dev/null", tarfile.CHRTYPE, 1, 3),
        device("dev/sda", tarfile.BLKTYPE, 8, 0),
        fifo("run/fifo"),
        symlink("lib", "usr/lib"),
        reg("usr/lib/libc.so", b"\x7fELF" + bytes(100)),
        hardlink("usr/lib/libc2.so", "usr/lib/libc.so"),
        directory("./"),
    )


def whiteouts() -> bytes:
    return build_tar(
        reg("etc/.wh.motd"),
        reg("var/cache/.wh..wh..opq"),
        reg(".wh..wh.plnk/1.2", b"aufs"),
        directory(".wh..wh.aufs"),
        reg("kept", b"k"),
    )


def data_on_link_types() -> bytes:
    """Link, device and directory headers with a size field: tarfile reads no data for them."""
    return (
        header("l", tarfile.LNKTYPE, 700, linkname="kept")
        + header("d", tarfile.DIRTYPE, 1 << 20)
        + file_blocks("after", b"after")
        + END
    )


def unknown_types() -> bytes:
    """An unknown type is skipped like a file; with a whiteout name it is a whiteout."""
    return header(".wh.gone", b"V", 700) + pad(bytes(700)) + file_blocks("f", b"f") + END


def unknown_type_entry() -> bytes:
    return header("volume", b"V", 10) + pad(bytes(10)) + END


def hdrcharset_binary() -> bytes:
    return (
        pax_header({"hdrcharset": b"BINARY", "path": b"latin-\xe9-name"})
        + header("x", tarfile.REGTYPE)
        + END
    )


def many_small_files(count: int = 300) -> bytes:
    """Files of many sizes, so that headers and contents fall across chunk boundaries."""
    return build_tar(
        *(reg(f"dir{i % 7}/file-{i}.txt", bytes([i % 251]) * (i * 37 % 2000)) for i in range(count))
    )


def large_pax_record() -> bytes:
    """A PAX header spanning several blocks, as a large xattr makes it."""
    return build_tar(reg("f", b"data", xattrs={"user.big": bytes(range(256)) * 12}))


def long_extension_chain(count: int) -> bytes:
    chain = b"".join(pax_header({"comment": b"c%d" % i}) for i in range(count))
    return chain + file_blocks("f", b"f") + END


def corrupt_second_header() -> bytes:
    """A bad checksum where a member should start ends the archive, as tarfile reads it."""
    bad = bytearray(file_blocks("b", b"b"))
    bad[0] = ord("c")
    return file_blocks("a", b"a") + bytes(bad) + file_blocks("never", b"n") + END


def corrupt_first_header() -> bytes:
    bad = bytearray(file_blocks("a", b"a"))
    bad[148] = ord("7")
    return bytes(bad) + END


def invalid_number_field() -> bytes:
    block = bytearray(header("a", tarfile.REGTYPE, 1))
    block[100:108] = b"08x\0\0\0\0\0"
    return file_blocks("first", b"1") + with_checksum(bytes(block)) + pad(b"a") + END


def zero_length_pax_record(first: bool) -> bytes:
    data = b"0 path=x\n"
    bad = header("././@PaxHeader", tarfile.XHDTYPE, len(data)) + pad(data)
    body = bad + file_blocks("x", b"x")
    return (body if first else file_blocks("a", b"a") + body) + END


def invalid_hdrcharset() -> bytes:
    """A hdrcharset record that is not UTF-8, which tarfile fails to decode."""
    return pax_header({"hdrcharset": b"\xff\xfe"}) + file_blocks("x", b"x") + END


def invalid_sparse_map() -> bytes:
    """A GNU sparse map of words, not numbers, after a plain first member."""
    return (
        file_blocks("a", b"a")
        + pax_header({"GNU.sparse.map": b"start,end"})
        + file_blocks("b", b"b")
        + END
    )


def truncated_in_content() -> bytes:
    return file_blocks("a", b"a" * 4096)[:2048]


def truncated_in_header() -> bytes:
    return file_blocks("a", b"a") + file_blocks("b", b"b")[:300]


def missing_end_marker() -> bytes:
    return file_blocks("a", b"a") + file_blocks("b", b"bb")


def garbage_after_end() -> bytes:
    return file_blocks("a", b"a") + bytes(BLOCK) + b"garbage" * 100


def extension_at_end() -> bytes:
    """A PAX header followed by the end marker: tarfile reads this as corrupt."""
    return file_blocks("a", b"a") + pax_header({"path": b"x"}) + END


def escape() -> bytes:
    return build_tar(reg("ok"), reg("../../etc/cron.d/evil", b"x"))


def gnu_sparse_archives() -> dict[str, bytes]:
    """Files, a sparse file and more files, as GNU tar writes each sparse format.

    Returns an empty dict when GNU tar is not installed.
    """
    if shutil.which("tar") is None:
        return {}
    archives = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        root.mkdir()
        (root / "a.txt").write_bytes(b"before")
        with open(root / "m-sparse.img", "wb") as out:
            out.write(b"start")
            out.seek(1 << 20)
            out.write(b"end")
        (root / "z.txt").write_bytes(b"after")
        formats = {
            "gnu sparse": ["--format=gnu"],
            "pax sparse 0.1": ["--format=posix", "--sparse-version=0.1"],
            "pax sparse 1.0": ["--format=posix", "--sparse-version=1.0"],
        }
        for name, options in formats.items():
            archive = Path(folder) / "layer.tar"
            command = ["tar", *options, "--sparse", "--sort=name", "-cf", str(archive)]
            subprocess.run([*command, "-C", str(root), "."], check=True)
            archives[name] = archive.read_bytes()
    return archives


def all_cases() -> dict[str, bytes]:
    """Every synthetic case by name, for tests that run each through both parsers."""
    return {
        "gnu long names": long_names(tarfile.GNU_FORMAT),
        "pax long names": long_names(tarfile.PAX_FORMAT),
        "pax fields": pax_fields(),
        "libarchive xattrs": libarchive_xattrs(),
        "pax size override": pax_size_override(),
        "pax invalid numbers": pax_invalid_numbers(),
        "global headers": global_headers(),
        "extension chains": extension_chains(),
        "ustar prefix": ustar_prefix(),
        "old style directory": old_style_directory(),
        "base-256 numbers": base256_numbers(),
        "special files": special_files(),
        "whiteouts": whiteouts(),
        "data on link types": data_on_link_types(),
        "unknown type whiteout": unknown_types(),
        "unknown type entry": unknown_type_entry(),
        "hdrcharset binary": hdrcharset_binary(),
        "many small files": many_small_files(),
        "large pax record": large_pax_record(),
        "chain of 10 extension headers": long_extension_chain(10),
        "chain of 80 extension headers": long_extension_chain(80),
        "corrupt second header": corrupt_second_header(),
        "corrupt first header": corrupt_first_header(),
        "invalid number field": invalid_number_field(),
        "zero-length pax record first": zero_length_pax_record(True),
        "zero-length pax record later": zero_length_pax_record(False),
        "truncated in content": truncated_in_content(),
        "truncated in header": truncated_in_header(),
        "missing end marker": missing_end_marker(),
        "garbage after end": garbage_after_end(),
        "extension header at end": extension_at_end(),
        "escape": escape(),
        "empty": b"",
        "end marker only": END,
        "one zero block": bytes(BLOCK),
        "not a tar": b"this is not a tar archive at all" * 40,
        "gzip magic": b"\x1f\x8b" + bytes(1000),
        "zero-filled file": build_tar(reg("zeros", bytes(70000))),
        **gnu_sparse_archives(),
    }
