"""write_layer: deterministic bytes, correct digests, and a layer that reads back the same."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from edgetrim.fs.entry import FileType
from edgetrim.fs.layerwrite import LayerBlobInfo, write_layer
from edgetrim.fs.tree import FileTree
from edgetrim.image import Image
from tests.fs.layers import (
    CAPABILITY,
    GZIP_MEDIA_TYPE,
    LONG_NAME,
    NON_UTF8,
    TAR_MEDIA_TYPE,
    build_tar,
    hardlink,
    image_from_blobs,
    image_from_docker_archive,
    make_image,
    reg,
    sample_layers,
)

COMPARED_FIELDS = (
    "mode",
    "uid",
    "gid",
    "uname",
    "gname",
    "mtime",
    "size",
    "digest",
    "xattrs",
    "devmajor",
    "devminor",
)


def write(image: Image, tree: FileTree, keep: set[str], compression: str = "gzip"):
    out = io.BytesIO()
    info = write_layer(image, tree, keep, out, compression=compression)  # type: ignore[arg-type]
    return out.getvalue(), info


def decompress(blob: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(blob)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


def reread(folder: Path, blob: bytes, info: LayerBlobInfo, compression: str) -> FileTree:
    """Read a written layer back as the only layer of an image, checking both digests."""
    media_type = TAR_MEDIA_TYPE if compression == "none" else GZIP_MEDIA_TYPE
    image = image_from_blobs(folder, [(blob, decompress(blob, compression), media_type)])
    assert image.layers[0].diff_id == info.diff_id
    return FileTree.from_image(image)


def with_parents(tree: FileTree, paths: set[str]) -> set[str]:
    keep = set(paths)
    for path in paths:
        keep.update(tree.parents(path))
    return keep


def kind(entry_type: FileType) -> FileType:
    """The type a path has in a rewritten layer, where a hardlink may become the regular file."""
    return FileType.REGULAR if entry_type is FileType.HARDLINK else entry_type


def assert_same_entries(original: FileTree, rewritten: FileTree, keep: set[str]) -> None:
    assert set(rewritten) == keep | {"/"}
    for path in keep:
        before, after = original.get(path), rewritten.get(path)
        assert before is not None
        assert after is not None
        assert kind(after.type) == kind(before.type), path
        for field in COMPARED_FIELDS:
            assert getattr(after, field) == getattr(before, field), f"{path}: {field}"
        if before.is_symlink:
            assert after.link_target == before.link_target, path


def expected_groups(tree: FileTree, keep: set[str]) -> list[list[str]]:
    """The kept hardlink groups of tree: paths sharing a content source, two or more."""
    groups: dict[tuple[int, str], list[str]] = {}
    for path in sorted(keep):
        source = tree.content_source(path)
        if source is not None:
            groups.setdefault(source, []).append(path)
    return sorted(paths for paths in groups.values() if len(paths) > 1)


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Image, FileTree]:
    image = make_image(tmp_path / "blobs", *sample_layers())
    return image, FileTree.from_image(image)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_write_twice_identical(sample: tuple[Image, FileTree], compression: str) -> None:
    image, tree = sample
    keep = set(tree) - {"/"}
    first, first_info = write(image, tree, keep, compression)
    second, second_info = write(image, tree, keep, compression)
    assert first == second
    assert first_info == second_info


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_blob_info_matches_bytes(sample: tuple[Image, FileTree], compression: str) -> None:
    image, tree = sample
    blob, info = write(image, tree, set(tree) - {"/"}, compression)
    tar = decompress(blob, compression)
    assert info.digest.hex == hashlib.sha256(blob).hexdigest()
    assert info.size == len(blob)
    assert info.diff_id.hex == hashlib.sha256(tar).hexdigest()
    assert info.uncompressed_size == len(tar)
    if compression == "none":
        assert info.digest == info.diff_id


def test_gzip_header_has_no_time_or_name(sample: tuple[Image, FileTree]) -> None:
    image, tree = sample
    blob, _ = write(image, tree, {"/bin", "/bin/sh"}, "gzip")
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] == 0, "gzip flags: no file name, comment or extra field"
    assert blob[4:8] == b"\0\0\0\0", "gzip mtime must be 0"


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_rewritten_layer_reads_back_same(
    sample: tuple[Image, FileTree], tmp_path: Path, compression: str
) -> None:
    image, tree = sample
    keep = set(tree) - {"/"}
    blob, info = write(image, tree, keep, compression)
    rewritten = reread(tmp_path / "reread", blob, info, compression)
    assert_same_entries(tree, rewritten, keep)
    assert rewritten.get("/usr/bin/ping").xattrs == {"security.capability": CAPABILITY}  # type: ignore[union-attr]
    assert rewritten.get("/usr/bin/su").mode == 0o4755  # type: ignore[union-attr]
    assert rewritten.get("/tmp").mode == 0o1777  # type: ignore[union-attr]
    assert "/" + NON_UTF8 in rewritten
    assert "/" + LONG_NAME in rewritten
    assert list(rewritten.hardlink_groups().values()) == expected_groups(tree, keep)


def test_members_sorted_pax(sample: tuple[Image, FileTree]) -> None:
    image, tree = sample
    blob, _ = write(image, tree, set(tree) - {"/"}, "none")
    with tarfile.open(fileobj=io.BytesIO(blob), encoding="utf-8", errors="surrogateescape") as tar:
        members = tar.getmembers()
    names = ["/" + member.name for member in members]
    assert names == sorted(set(tree) - {"/"})
    ping = next(member for member in members if member.name == "usr/bin/ping")
    assert "SCHILY.xattr.security.capability" in ping.pax_headers
    sh = next(member for member in members if member.name == "bin/sh")
    assert (sh.type, sh.linkname) == (tarfile.LNKTYPE, "bin/busybox")


def test_root_written_only_when_kept(sample: tuple[Image, FileTree]) -> None:
    image, tree = sample
    with_root, _ = write(image, tree, {"/", "/tmp"}, "none")
    without_root, _ = write(image, tree, {"/tmp"}, "none")
    with tarfile.open(fileobj=io.BytesIO(with_root)) as tar:
        assert tar.getnames() == [".", "tmp"]
    with tarfile.open(fileobj=io.BytesIO(without_root)) as tar:
        assert tar.getnames() == ["tmp"]


def test_hardlink_group_without_original_target(
    sample: tuple[Image, FileTree], tmp_path: Path
) -> None:
    image, tree = sample
    keep = {"/bin", "/bin/ls", "/bin/sh"}
    blob, info = write(image, tree, keep, "gzip")
    rewritten = reread(tmp_path / "reread", blob, info, "gzip")
    ls, sh = rewritten.get("/bin/ls"), rewritten.get("/bin/sh")
    assert ls is not None
    assert sh is not None
    assert ls.type is FileType.REGULAR
    assert (sh.type, sh.link_target) == (FileType.HARDLINK, "/bin/ls")
    assert ls.digest == hashlib.sha256(b"\x7fELF busybox").hexdigest()
    assert rewritten.hardlink_groups() == {"/bin/ls": ["/bin/ls", "/bin/sh"]}
    assert_same_entries(tree, rewritten, keep)


def test_single_kept_hardlink_becomes_file(sample: tuple[Image, FileTree], tmp_path: Path) -> None:
    image, tree = sample
    blob, info = write(image, tree, {"/bin", "/bin/sh"}, "none")
    rewritten = reread(tmp_path / "reread", blob, info, "none")
    assert rewritten.get("/bin/sh").type is FileType.REGULAR  # type: ignore[union-attr]
    assert rewritten.hardlink_groups() == {}


def test_cross_layer_hardlink_content(tmp_path: Path) -> None:
    lower = build_tar(reg("a", b"old"), hardlink("b", "a"))
    upper = build_tar(reg("a", b"new"), hardlink("c", "b"))
    image = make_image(tmp_path / "blobs", lower, upper)
    tree = FileTree.from_image(image)
    blob, info = write(image, tree, {"/a", "/b", "/c"}, "none")
    rewritten = reread(tmp_path / "reread", blob, info, "none")
    assert rewritten.get("/a").digest == hashlib.sha256(b"new").hexdigest()  # type: ignore[union-attr]
    assert rewritten.get("/b").digest == hashlib.sha256(b"old").hexdigest()  # type: ignore[union-attr]
    assert rewritten.hardlink_groups() == {"/b": ["/b", "/c"]}


def test_hardlink_to_rewritten_path_stays_apart(tmp_path: Path) -> None:
    image = make_image(
        tmp_path / "blobs", build_tar(reg("a", b"v1"), hardlink("b", "a"), reg("a", b"v2"))
    )
    tree = FileTree.from_image(image)
    blob, info = write(image, tree, {"/a", "/b"}, "none")
    rewritten = reread(tmp_path / "reread", blob, info, "none")
    assert rewritten.get("/a").digest == hashlib.sha256(b"v2").hexdigest()  # type: ignore[union-attr]
    assert rewritten.get("/b").digest == hashlib.sha256(b"v1").hexdigest()  # type: ignore[union-attr]
    assert rewritten.hardlink_groups() == {}


def test_keep_path_missing_from_tree(sample: tuple[Image, FileTree]) -> None:
    image, tree = sample
    with pytest.raises(ValueError, match="/no/such/file"):
        write(image, tree, {"/no/such/file"})


def test_keep_without_parent(sample: tuple[Image, FileTree]) -> None:
    image, tree = sample
    with pytest.raises(ValueError, match="parent directory is not kept: /usr/bin/su"):
        write(image, tree, {"/usr/bin/su"})


def test_unknown_compression(sample: tuple[Image, FileTree]) -> None:
    image, tree = sample
    with pytest.raises(ValueError, match="unknown layer compression 'lz4'"):
        write(image, tree, {"/tmp"}, "lz4")


def test_dive_subset_reads_back_same(fixtures_dir: Path, tmp_path: Path) -> None:
    archive = fixtures_dir / "dive" / "test-docker-image.tar"
    image = image_from_docker_archive(archive, tmp_path / "blobs")
    tree = FileTree.from_image(image)
    chosen = {"/bin/ls", "/bin/cat", "/bin/getconf", "/etc/passwd", "/root/saved.txt", "/tmp"}
    keep = with_parents(tree, chosen)
    blob, info = write(image, tree, keep, "gzip")
    rewritten = reread(tmp_path / "reread", blob, info, "gzip")
    assert_same_entries(tree, rewritten, keep)
    assert rewritten.hardlink_groups() == {"/bin/cat": ["/bin/cat", "/bin/ls"]}
    again, _ = write(image, tree, keep, "gzip")
    assert again == blob
