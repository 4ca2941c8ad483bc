"""Hostile layers in whole docker archives, driven through open_image, FileTree and unpack.

Each case states its outcome: the image unpacks and the result is checked, or reading it
raises one error class with a given text. Every case also checks a sentinel folder beside
the destination: nothing in it changes and nothing new appears there, and a rejected image
leaves no destination behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgetrim.errors import EdgetrimError, ImageFormatError, UnsafeLayerError
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import unpack
from edgetrim.transports import open_image
from tests.fs.layers import build_tar, device, directory, fifo, hardlink, reg, symlink
from tests.hostile.archives import (
    UNCHECKED_DIFF_ID,
    Blob,
    docker_archive,
    gzip_bomb,
    gzip_layer,
    tar_layer,
    zstd_bomb,
)

SENTINEL = b"untouched"
IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Unpacks:
    """The image unpacks; ``check`` gets the destination and the sentinel folder."""

    check: Callable[[Path, Path], None]
    needs_root: bool = False


@dataclass(frozen=True)
class Rejected:
    """Reading the layers raises ``error`` (that class or a subclass) with ``text``."""

    error: type[EdgetrimError]
    text: str


Build = Callable[[Path], list[Blob]]


def pax(member: tuple[tarfile.TarInfo, bytes], **records: str) -> tuple[tarfile.TarInfo, bytes]:
    info, data = member
    info.pax_headers = {**info.pax_headers, **records}
    return info, data


def one_layer(*members: tuple[tarfile.TarInfo, bytes], tar_format: int = tarfile.PAX_FORMAT):
    return lambda outside: [tar_layer(build_tar(*members, tar_format=tar_format))]


def content(path: Path) -> bytes:
    return path.read_bytes()


def check_file(name: str, data: bytes) -> Callable[[Path, Path], None]:
    def check(dest: Path, outside: Path) -> None:
        assert (dest / name).read_bytes() == data

    return check


def check_symlink_outside(dest: Path, outside: Path) -> None:
    assert os.readlink(dest / "escape") == str(outside / "sentinel")
    assert (dest / "escape").is_symlink()


def check_absolute_inside(dest: Path, outside: Path) -> None:
    # The absolute name of the sentinel lands under the destination, not at the sentinel.
    assert (dest / str(outside / "sentinel").lstrip("/")).read_bytes() == b"inside"


def check_devices(dest: Path, outside: Path) -> None:
    null, loop = os.lstat(dest / "dev/null"), os.lstat(dest / "dev/loop0")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(loop.st_mode)
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)


def check_fifo(dest: Path, outside: Path) -> None:
    assert stat.S_ISFIFO(os.lstat(dest / "run/initctl").st_mode)


def check_non_utf8(dest: Path, outside: Path) -> None:
    assert os.listdir(os.fsencode(dest / "data")) == [b"caf\xe9.txt"]


def check_long_names(dest: Path, outside: Path) -> None:
    assert (dest / "d" / ("n" * 150)).read_bytes() == b"gnu"
    assert (dest / "p" / ("q" * 200)).read_bytes() == b"pax"


def symlink_swap(outside: Path) -> list[Blob]:
    """One layer makes a directory, replaces it with a symlink out, then writes through it."""
    return [
        tar_layer(
            build_tar(
                directory("dir"),
                symlink("dir", str(outside)),
                reg("dir/sentinel", b"pwned"),
            )
        )
    ]


def symlink_then_write(outside: Path) -> list[Blob]:
    return [
        tar_layer(build_tar(symlink("escape", str(outside)))),
        tar_layer(build_tar(reg("escape/sentinel", b"pwned"))),
    ]


def hardlink_through_symlink(outside: Path) -> list[Blob]:
    return [
        tar_layer(build_tar(symlink("escape", str(outside)), hardlink("grab", "escape/sentinel")))
    ]


def relative_symlink_out(outside: Path) -> list[Blob]:
    return [
        tar_layer(build_tar(symlink("up", "../../../../../../../.."))),
        tar_layer(build_tar(reg(f"up{outside}/sentinel", b"pwned"))),
    ]


def pax_chain(outside: Path) -> list[Blob]:
    chain = b""
    for _ in range(3000):
        record = b"14 comment=ab\n"
        header = tarfile.TarInfo("././@PaxHeader")
        header.type = tarfile.XHDTYPE
        header.size = len(record)
        chain += header.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512)
    return [tar_layer(chain + build_tar(reg("after", b"x")))]


def huge_gnu_longname(outside: Path) -> list[Blob]:
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = 64 << 20
    tar = header.tobuf(tarfile.USTAR_FORMAT) + bytes(64 << 20)
    return [gzip_layer(tar)]


CASES: dict[str, tuple[Build, Unpacks | Rejected]] = {
    "dotdot-name": (
        one_layer(reg("../outside/sentinel", b"pwned")),
        Rejected(UnsafeLayerError, "points outside the image root"),
    ),
    "dotdot-inside-name": (
        one_layer(reg("a/../../outside/sentinel", b"pwned")),
        Rejected(UnsafeLayerError, "points outside the image root"),
    ),
    "absolute-name": (
        lambda outside: [tar_layer(build_tar(reg(str(outside / "sentinel"), b"inside")))],
        Unpacks(check_absolute_inside),
    ),
    "symlink-out-then-write": (
        symlink_then_write,
        Rejected(UnsafeLayerError, "lies under the symlink"),
    ),
    "symlink-swapped-in": (symlink_swap, Rejected(UnsafeLayerError, "lies under the symlink")),
    "relative-symlink-out-then-write": (
        relative_symlink_out,
        Rejected(UnsafeLayerError, "lies under the symlink"),
    ),
    "symlink-out-kept-as-link": (
        lambda outside: [tar_layer(build_tar(symlink("escape", str(outside / "sentinel"))))],
        Unpacks(check_symlink_outside),
    ),
    "hardlink-dotdot": (
        one_layer(hardlink("grab", "../outside/sentinel")),
        Rejected(UnsafeLayerError, "points outside the image root"),
    ),
    "hardlink-absolute-missing": (
        lambda outside: [tar_layer(build_tar(hardlink("grab", str(outside / "sentinel"))))],
        Rejected(UnsafeLayerError, "does not exist in this or a lower layer"),
    ),
    "hardlink-through-symlink": (
        hardlink_through_symlink,
        Rejected(UnsafeLayerError, "lies under the symlink"),
    ),
    "device-nodes": (
        one_layer(
            device("dev/null", tarfile.CHRTYPE, 1, 3),
            device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        ),
        Unpacks(check_devices, needs_root=True),
    ),
    "device-number-too-large": (
        one_layer(device("dev/odd", tarfile.CHRTYPE, 1 << 20, 0)),
        Rejected(UnsafeLayerError, "which Linux cannot encode"),
    ),
    "fifo": (one_layer(fifo("run/initctl", mode=0o600)), Unpacks(check_fifo)),
    "duplicate-entries": (
        one_layer(reg("etc/motd", b"first"), reg("etc/motd", b"second")),
        Unpacks(check_file("etc/motd", b"second")),
    ),
    "non-utf8-name": (
        one_layer(reg(b"data/caf\xe9.txt".decode("utf-8", "surrogateescape"), b"latin-1")),
        Unpacks(check_non_utf8),
    ),
    "long-names": (
        lambda outside: [
            tar_layer(build_tar(reg("d/" + "n" * 150, b"gnu"), tar_format=tarfile.GNU_FORMAT)),
            tar_layer(build_tar(reg("p/" + "q" * 200, b"pax"))),
        ],
        Unpacks(check_long_names),
    ),
    "name-longer-than-linux": (
        one_layer(reg("x" * 300, b"")),
        Rejected(UnsafeLayerError, "longer than Linux allows"),
    ),
    "nul-in-pax-path": (
        one_layer(pax(reg("plain", b""), path="a\x00b")),
        Rejected(UnsafeLayerError, "NUL byte"),
    ),
    "pax-negative-size": (
        one_layer(pax(reg("f", b"data"), size="-5")),
        Rejected(UnsafeLayerError, "negative size -5"),
    ),
    "pax-huge-size": (
        one_layer(pax(reg("f", b"data"), size=str(1 << 50))),
        Rejected(UnsafeLayerError, "would expand to more than"),
    ),
    "pax-nan-mtime": (
        one_layer(pax(reg("f", b""), mtime="nan")),
        Rejected(UnsafeLayerError, "not a finite time"),
    ),
    "pax-far-mtime": (
        one_layer(pax(reg("f", b""), mtime="1e300")),
        Rejected(UnsafeLayerError, "outside the range"),
    ),
    "pax-garbage-mtime": (
        # tarfile reads an unparsable number as 0, which is a valid time.
        one_layer(pax(reg("f", b"x"), mtime="yesterday")),
        Unpacks(check_file("f", b"x")),
    ),
    "pax-huge-uid": (
        one_layer(pax(reg("f", b""), uid=str(1 << 70))),
        Rejected(UnsafeLayerError, "outside 0..4294967294"),
    ),
    "pax-negative-gid": (
        one_layer(pax(reg("f", b""), gid="-1")),
        Rejected(UnsafeLayerError, "outside 0..4294967294"),
    ),
    "pax-huge-header": (
        one_layer(pax(reg("f", b""), comment="x" * (20 << 20))),
        Rejected(UnsafeLayerError, "larger than 16777216 bytes"),
    ),
    "pax-header-chain": (pax_chain, Rejected(UnsafeLayerError, "chain of more extension headers")),
    "gnu-huge-longname": (huge_gnu_longname, Rejected(UnsafeLayerError, "larger than 16777216")),
    "bad-base64-xattr": (
        one_layer(pax(reg("f", b""), **{"LIBARCHIVE.xattr.user.x": "a"})),
        Rejected(ImageFormatError, "not valid base64"),
    ),
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "sentinel").write_bytes(SENTINEL)
    return folder


def assert_untouched(outside: Path) -> None:
    assert (outside / "sentinel").read_bytes() == SENTINEL
    assert sorted(os.listdir(outside)) == ["sentinel"]


def run_case(archive: Path, dest: Path, expected: Unpacks | Rejected, outside: Path) -> None:
    with open_image(f"docker-archive:{archive}") as image:
        if isinstance(expected, Rejected):
            with pytest.raises(expected.error, match=expected.text) as caught:
                unpack(image, FileTree.from_image(image), dest)
            assert "\n" not in str(caught.value)
            assert not dest.exists()
        else:
            unpack(image, FileTree.from_image(image), dest)
            expected.check(dest, outside)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_layer(case: str, tmp_path: Path, outside: Path) -> None:
    build, expected = CASES[case]
    if isinstance(expected, Unpacks) and expected.needs_root and not IS_ROOT:
        pytest.skip("device nodes need root")
    archive = docker_archive(tmp_path / "hostile.tar", build(outside))
    run_case(archive, tmp_path / "rootfs", expected, outside)
    assert_untouched(outside)
    assert sorted(os.listdir(tmp_path)) in (
        ["hostile.tar", "outside"],
        ["hostile.tar", "outside", "rootfs"],
    )


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar writes the sparse test layer")
@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_sparse_file_layer(
    tmp_path: Path, outside: Path, tar_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    size = 8 << 20
    with open(source / "disk.img", "wb") as out:
        out.write(b"head")
        out.seek(size - 4)
        out.write(b"tail")
    layer = tmp_path / "layer.tar"
    subprocess.run(
        ["tar", f"--format={tar_format}", "--sparse", "-cf", str(layer), "-C", str(source), "."],
        check=True,
    )
    archive = docker_archive(tmp_path / "sparse.tar", [tar_layer(layer.read_bytes())])
    dest = tmp_path / "rootfs"
    expected = hashlib.sha256(b"head" + bytes(size - 8) + b"tail").hexdigest()
    with open_image(f"docker-archive:{archive}") as image:
        tree = FileTree.from_image(image)
        entry = tree.get("/disk.img")
        assert entry is not None
        assert (entry.size, entry.digest) == (size, expected)
        unpack(image, tree, dest)
    assert hashlib.sha256((dest / "disk.img").read_bytes()).hexdigest() == expected
    # The sparse file's full size counts against the layer limit, not its stored bytes.
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "4M")
    with (
        open_image(f"docker-archive:{archive}") as image,
        pytest.raises(UnsafeLayerError, match="files of the layer would expand"),
    ):
        FileTree.from_image(image)
    assert_untouched(outside)


@pytest.mark.parametrize(
    ("kind", "bomb"),
    [("gzip", lambda: gzip_bomb(256 << 20)), ("zstd", lambda: zstd_bomb(4 << 30))],
)
def test_decompression_bomb(
    kind: str, bomb, tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = bomb()
    assert len(blob) < 1 << 20, f"the {kind} bomb is {len(blob)} bytes"
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "64M")
    archive = docker_archive(tmp_path / "bomb.tar", [(blob, UNCHECKED_DIFF_ID)])
    started = time.monotonic()
    tracemalloc.start()
    try:
        with (
            open_image(f"docker-archive:{archive}") as image,
            pytest.raises(UnsafeLayerError, match="decompression bomb") as caught,
        ):
            FileTree.from_image(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "EDGETRIM_MAX_LAYER_SIZE" in str(caught.value)
    assert peak < 32 << 20, f"peak Python memory {peak} bytes"
    assert time.monotonic() - started < 60
    assert_untouched(outside)


def test_bomb_in_legacy_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pre-1.10 archive is hashed when opened, so the limit applies there already."""
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "32M")
    layer_id = "a" * 64
    with tarfile.open(tmp_path / "legacy.tar", "w") as archive:
        from tests.hostile.archives import add_bytes

        add_bytes(archive, "repositories", b'{"bomb": {"1": "' + layer_id.encode() + b'"}}')
        add_bytes(archive, f"{layer_id}/json", b'{"id": "' + layer_id.encode() + b'"}')
        add_bytes(archive, f"{layer_id}/layer.tar", gzip_bomb(128 << 20))
    with (
        pytest.raises(UnsafeLayerError, match="decompresses to more than"),
        open_image(f"docker-archive:{tmp_path / 'legacy.tar'}"),
    ):
        pass


def test_bomb_as_whole_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRIM_MAX_ARCHIVE_SIZE", "16M")
    (tmp_path / "archive.tar.gz").write_bytes(gzip_bomb(64 << 20))
    with (
        pytest.raises(UnsafeLayerError, match="EDGETRIM_MAX_ARCHIVE_SIZE"),
        open_image(f"docker-archive:{tmp_path / 'archive.tar.gz'}"),
    ):
        pass


def test_entry_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_ENTRIES", "100")
    tar = build_tar(*[reg(f"f{i}", b"") for i in range(101)])
    archive = docker_archive(tmp_path / "many.tar", [tar_layer(tar)])
    with (
        open_image(f"docker-archive:{archive}") as image,
        pytest.raises(UnsafeLayerError, match="more than 100 entries"),
    ):
        FileTree.from_image(image)


def test_invalid_limit_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "lots")
    archive = docker_archive(tmp_path / "a.tar", [tar_layer(build_tar(reg("f", b"x")))])
    with (
        open_image(f"docker-archive:{archive}") as image,
        pytest.raises(EdgetrimError, match="EDGETRIM_MAX_LAYER_SIZE: 'lots' is not a size"),
    ):
        FileTree.from_image(image)


def edgetrim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("case", ["dotdot-name", "symlink-swapped-in", "pax-huge-uid"])
def test_hostile_layer_through_minimize(case: str, tmp_path: Path, outside: Path) -> None:
    """minimize reads the file tree before it unpacks or runs anything, so it stops there."""
    build, expected = CASES[case]
    assert isinstance(expected, Rejected)
    archive = docker_archive(tmp_path / "hostile.tar", build(outside))
    dest = tmp_path / "out.tar"
    work = tmp_path / "work"
    work.mkdir()
    result = edgetrim(
        "minimize", f"docker-archive:{archive}", f"docker-archive:{dest}", "--cmd-probe",
        "--work-dir", str(work),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected.text in lines[0]
    assert not dest.exists()
    assert os.listdir(work) == []
    assert_untouched(outside)


def test_bomb_through_cli(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "bomb.tar", [(zstd_bomb(1 << 30), UNCHECKED_DIFF_ID)])
    result = edgetrim(
        "minimize", f"docker-archive:{archive}", f"oci:{tmp_path / 'out'}",
        env={"EDGETRIM_MAX_LAYER_SIZE": "100M"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "decompression bomb" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
