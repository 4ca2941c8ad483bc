"""FileTree: OCI layer semantics, hardlinks, symlink resolution, and real fixture images."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from edgetrim.errors import DigestMismatchError, UnsafeLayerError
from edgetrim.fs.entry import FileType
from edgetrim.fs.tree import MAX_SYMLINKS, ContentSource, FileTree
from tests.fs.layers import (
    build_tar,
    device,
    directory,
    fifo,
    hardlink,
    image_from_docker_archive,
    make_image,
    reg,
    symlink,
    whiteout,
)


def tree_of(*tars: bytes) -> FileTree:
    tree = FileTree()
    for index, tar in enumerate(tars):
        tree.apply_layer(io.BytesIO(tar), index, f"layer {index}")
    return tree


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- basic queries ------------------------------------------------------------------------------


def test_empty_tree_has_root() -> None:
    tree = FileTree()
    assert list(tree) == ["/"]
    assert tree.get("/").is_dir  # type: ignore[union-attr]


def test_queries() -> None:
    tree = tree_of(build_tar(directory("usr"), reg("usr/b", b"bb"), reg("usr/a", b"a")))
    assert list(tree) == ["/", "/usr", "/usr/a", "/usr/b"]
    assert len(tree) == 4
    assert "/usr/a" in tree
    assert "/usr/c" not in tree
    assert tree.get("/usr/c") is None
    assert tree.children("/usr") == ["/usr/a", "/usr/b"]
    assert tree.children("/") == ["/usr"]
    assert tree.children("/usr/a") == []
    assert tree.parents("/usr/a") == ["/", "/usr"]
    assert tree.parents("/") == []
    assert [entry.path for entry in tree.entries()] == list(tree)
    assert tree.total_size == 3


def test_missing_parents_made_implicit() -> None:
    tree = tree_of(build_tar(reg("a/b/c/file", b"x")))
    for path in ("/a", "/a/b", "/a/b/c"):
        entry = tree.get(path)
        assert entry is not None
        assert entry.type is FileType.DIRECTORY
        assert (entry.mode, entry.uid, entry.gid) == (0o755, 0, 0)


def test_root_entry_sets_root_metadata() -> None:
    tree = tree_of(build_tar(directory("./", mode=0o700, uid=5)))
    root = tree.get("/")
    assert root is not None
    assert (root.mode, root.uid) == (0o700, 5)


def test_root_as_file_rejected() -> None:
    with pytest.raises(UnsafeLayerError, match="image root"):
        tree_of(build_tar(reg("./", b"")))


# -- whiteouts and replacement ------------------------------------------------------------------


def test_file_whiteout() -> None:
    lower = build_tar(reg("etc/motd", b"hi"), reg("etc/issue", b"x"))
    tree = tree_of(lower, build_tar(whiteout("etc/.wh.motd")))
    assert "/etc/motd" not in tree
    assert "/etc/issue" in tree


def test_directory_whiteout_removes_subtree() -> None:
    lower = build_tar(
        reg("opt/app/bin/tool", b"t"), reg("opt/app/lib/x.so", b"x"), reg("opt/k", b"")
    )
    tree = tree_of(lower, build_tar(whiteout("opt/.wh.app")))
    assert list(tree) == ["/", "/opt", "/opt/k"]
    assert tree.children("/opt") == ["/opt/k"]


def test_whiteout_of_missing_path_ignored() -> None:
    tree = tree_of(build_tar(reg("a", b"")), build_tar(whiteout(".wh.nothing")))
    assert list(tree) == ["/", "/a"]


@pytest.mark.parametrize("marker_first", [True, False])
def test_whiteout_spares_same_layer_entry(marker_first: bool) -> None:
    lower = build_tar(reg("conf/old", b"old"), reg("conf/keep", b""))
    members = [whiteout(".wh.conf"), directory("conf"), reg("conf/new", b"new")]
    upper = build_tar(*(members if marker_first else members[::-1]))
    tree = tree_of(lower, upper)
    assert tree.children("/conf") == ["/conf/new"]
    assert tree.get("/conf/new").layer == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_dir_keeps_same_layer_additions(marker_first: bool) -> None:
    lower = build_tar(reg("var/lib/a", b"a"), reg("var/lib/sub/b", b"b"), reg("var/other", b""))
    members = [directory("var/lib", mode=0o750), reg("var/lib/c", b"c"), reg("var/lib/d/e", b"e")]
    marker = whiteout("var/lib/.wh..wh..opq")
    upper = build_tar(marker, *members) if marker_first else build_tar(*members, marker)
    tree = tree_of(lower, upper)
    assert [p for p in tree if p.startswith("/var/")] == [
        "/var/lib",
        "/var/lib/c",
        "/var/lib/d",
        "/var/lib/d/e",
        "/var/other",
    ]
    assert tree.get("/var/lib").mode == 0o750  # type: ignore[union-attr]


def test_opaque_marker_alone_makes_directory() -> None:
    tree = tree_of(build_tar(reg("data/x", b"")), build_tar(whiteout("data/.wh..wh..opq")))
    assert tree.get("/data").is_dir  # type: ignore[union-attr]
    assert tree.children("/data") == []


def test_opaque_marker_over_lower_file_makes_directory() -> None:
    tree = tree_of(build_tar(reg("data", b"file")), build_tar(whiteout("data/.wh..wh..opq")))
    assert tree.get("/data").is_dir  # type: ignore[union-attr]


def test_directory_replaced_by_file() -> None:
    lower = build_tar(reg("srv/www/index.html", b"<html>"), reg("srv/www/a/b", b""))
    tree = tree_of(lower, build_tar(reg("srv/www", b"now a file")))
    assert tree.get("/srv/www").type is FileType.REGULAR  # type: ignore[union-attr]
    assert [p for p in tree if p.startswith("/srv/www/")] == []
    assert tree.children("/srv") == ["/srv/www"]


def test_directory_replaced_by_symlink() -> None:
    lower = build_tar(reg("lib/libc.so", b"elf"))
    tree = tree_of(lower, build_tar(symlink("lib", "usr/lib"), reg("usr/lib/libc.so", b"elf")))
    assert tree.get("/lib").is_symlink  # type: ignore[union-attr]
    assert "/lib/libc.so" not in tree


def test_file_replaced_by_directory() -> None:
    tree = tree_of(build_tar(reg("x", b"f")), build_tar(directory("x"), reg("x/y", b"")))
    assert tree.get("/x").is_dir  # type: ignore[union-attr]
    assert tree.children("/x") == ["/x/y"]


def test_directory_over_directory_merges() -> None:
    lower = build_tar(directory("d", mode=0o755), reg("d/old", b""))
    tree = tree_of(lower, build_tar(directory("d", mode=0o700, uid=7), reg("d/new", b"")))
    entry = tree.get("/d")
    assert entry is not None
    assert (entry.mode, entry.uid, entry.layer) == (0o700, 7, 1)
    assert tree.children("/d") == ["/d/new", "/d/old"]


def test_duplicate_entries_later_wins() -> None:
    tree = tree_of(build_tar(reg("a", b"first", mode=0o600), reg("a", b"second", mode=0o644)))
    entry = tree.get("/a")
    assert entry is not None
    assert (entry.digest, entry.size, entry.mode) == (sha(b"second"), 6, 0o644)


def test_duplicate_directory_then_file() -> None:
    tree = tree_of(build_tar(directory("a"), reg("a/child", b""), reg("a", b"file")))
    assert tree.get("/a").type is FileType.REGULAR  # type: ignore[union-attr]
    assert "/a/child" not in tree


def test_special_files_kept() -> None:
    tree = tree_of(build_tar(device("dev/null", tarfile.CHRTYPE, 1, 3), fifo("run/ctl")))
    assert tree.get("/dev/null").type is FileType.CHAR_DEVICE  # type: ignore[union-attr]
    assert tree.get("/run/ctl").type is FileType.FIFO  # type: ignore[union-attr]


# -- unsafe layers ------------------------------------------------------------------------------


def test_write_through_symlink_rejected() -> None:
    lower = build_tar(symlink("etc", "/host-etc"))
    with pytest.raises(UnsafeLayerError, match="symlink /etc") as caught:
        tree_of(lower, build_tar(reg("etc/passwd", b"pwned")))
    assert "layer 1" in str(caught.value)


def test_write_through_same_layer_symlink_rejected() -> None:
    with pytest.raises(UnsafeLayerError, match="symlink /x"):
        tree_of(build_tar(symlink("x", "../../.."), reg("x/evil", b"")))


def test_whiteout_through_symlink_rejected() -> None:
    lower = build_tar(directory("usr/lib"), reg("usr/lib/x", b""), symlink("lib", "usr/lib"))
    with pytest.raises(UnsafeLayerError, match="symlink /lib"):
        tree_of(lower, build_tar(whiteout("lib/.wh.x")))


def test_opaque_marker_on_symlink_rejected() -> None:
    lower = build_tar(directory("usr/lib"), symlink("lib", "usr/lib"))
    with pytest.raises(UnsafeLayerError, match="symlink /lib"):
        tree_of(lower, build_tar(whiteout("lib/.wh..wh..opq")))


def test_entry_under_regular_file_rejected() -> None:
    with pytest.raises(UnsafeLayerError, match="not a directory"):
        tree_of(build_tar(reg("f", b"")), build_tar(reg("f/g", b"")))


def test_dotdot_escape_rejected_by_tree() -> None:
    with pytest.raises(UnsafeLayerError, match="outside the image root"):
        tree_of(build_tar(reg("a/../../escape", b"")))


# -- hardlinks ----------------------------------------------------------------------------------


def test_hardlink_copies_target() -> None:
    xattrs = {"security.capability": b"\x01\x00\x00\x02" + bytes(16)}
    tar = build_tar(
        reg("bin/busybox", b"elf" * 10, mode=0o4755, uid=0, gid=10, xattrs=xattrs),
        hardlink("bin/sh", "bin/busybox"),
    )
    tree = tree_of(tar)
    link = tree.get("/bin/sh")
    assert link is not None
    assert link.type is FileType.HARDLINK
    assert link.link_target == "/bin/busybox"
    assert (link.digest, link.size) == (sha(b"elf" * 10), 30)
    assert (link.mode, link.gid, link.xattrs) == (0o4755, 10, xattrs)
    assert tree.hardlink_groups() == {"/bin/busybox": ["/bin/busybox", "/bin/sh"]}
    assert tree.total_size == 30


def test_hardlink_chain_points_at_first_file() -> None:
    tar = build_tar(reg("a", b"data"), hardlink("b", "a"), hardlink("c", "b"))
    tree = tree_of(tar)
    assert tree.get("/c").link_target == "/a"  # type: ignore[union-attr]
    assert tree.hardlink_groups() == {"/a": ["/a", "/b", "/c"]}


def test_hardlink_survives_deleted_target() -> None:
    tree = tree_of(build_tar(reg("a", b"data"), hardlink("b", "a")), build_tar(whiteout(".wh.a")))
    link = tree.get("/b")
    assert link is not None
    assert link.type is FileType.HARDLINK
    assert link.digest == sha(b"data")
    assert tree.content_source("/b") == ContentSource(0, "/a", sha(b"data"))
    assert tree.hardlink_groups() == {"/a": ["/b"]}
    assert tree.total_size == 4


def test_hardlink_keeps_content_of_replaced_target() -> None:
    lower = build_tar(reg("a", b"old"), hardlink("b", "a"))
    tree = tree_of(lower, build_tar(reg("a", b"new!")))
    assert tree.get("/b").digest == sha(b"old")  # type: ignore[union-attr]
    assert tree.get("/a").digest == sha(b"new!")  # type: ignore[union-attr]
    assert tree.hardlink_groups() == {"/a": ["/b"]}
    assert tree.total_size == 7


def test_hardlink_to_rewritten_path_in_same_layer() -> None:
    tree = tree_of(build_tar(reg("a", b"v1"), hardlink("b", "a"), reg("a", b"v2!")))
    assert tree.get("/b").digest == sha(b"v1")  # type: ignore[union-attr]
    assert tree.content_source("/a") != tree.content_source("/b")
    assert tree.hardlink_groups() == {"/a": ["/b"]}
    assert tree.total_size == 5


def test_hardlink_groups_share_target_path() -> None:
    lower = build_tar(reg("a", b"old"), hardlink("b", "a"))
    upper = build_tar(reg("a", b"new"), hardlink("c", "a"))
    tree = tree_of(lower, upper)
    assert tree.hardlink_groups() == {"/a": ["/a", "/c"], "/b": ["/b"]}


def test_hardlink_across_layers() -> None:
    tree = tree_of(build_tar(reg("lib/x.so", b"so")), build_tar(hardlink("lib/y.so", "lib/x.so")))
    link = tree.get("/lib/y.so")
    assert link is not None
    assert (link.layer, link.link_layer, link.link_target) == (1, 0, "/lib/x.so")
    assert tree.hardlink_groups() == {"/lib/x.so": ["/lib/x.so", "/lib/y.so"]}


def test_hardlink_to_symlink_is_symlink() -> None:
    tree = tree_of(build_tar(symlink("s", "target"), hardlink("t", "s")))
    entry = tree.get("/t")
    assert entry is not None
    assert (entry.type, entry.link_target) == (FileType.SYMLINK, "target")


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([hardlink("b", "missing")], "does not exist"),
        ([directory("d"), hardlink("b", "d")], "is a directory"),
        ([reg("b", b""), hardlink("b", "b")], "is the link itself"),
    ],
)
def test_invalid_hardlink_rejected(members: list, problem: str) -> None:
    with pytest.raises(UnsafeLayerError, match=problem):
        tree_of(build_tar(*members))


def test_hardlink_target_through_symlink_rejected() -> None:
    with pytest.raises(UnsafeLayerError, match="symlink /s"):
        tree_of(build_tar(symlink("s", "/etc"), hardlink("copy", "s/shadow")))


# -- symlink resolution -------------------------------------------------------------------------


@pytest.fixture
def merged_usr() -> FileTree:
    return tree_of(
        build_tar(
            directory("usr/lib/x86_64-linux-gnu"),
            reg("usr/lib/x86_64-linux-gnu/libc.so.6", b"elf"),
            symlink("usr/lib/x86_64-linux-gnu/libc.so", "libc.so.6"),
            directory("usr/lib64"),
            symlink("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/libc.so.6"),
            symlink("lib", "usr/lib"),
            symlink("lib64", "/usr/lib64"),
            directory("usr/bin"),
            reg("usr/bin/python3.11", b"py"),
            symlink("usr/bin/python3", "python3.11"),
            symlink("usr/bin/escape", "../../../../usr/bin/python3"),
            symlink("loop/a", "b"),
            symlink("loop/b", "a"),
            symlink("dangling", "/nowhere"),
        )
    )


def test_resolve_plain_path(merged_usr: FileTree) -> None:
    assert merged_usr.resolve("/usr/bin/python3.11").path == "/usr/bin/python3.11"
    assert merged_usr.resolve("/usr/bin/python3.11").symlinks == []


def test_resolve_merged_usr(merged_usr: FileTree) -> None:
    result = merged_usr.resolve("/lib/x86_64-linux-gnu/libc.so")
    assert result.path == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert result.symlinks == ["/lib", "/usr/lib/x86_64-linux-gnu/libc.so"]


def test_resolve_absolute_then_relative(merged_usr: FileTree) -> None:
    result = merged_usr.resolve("/lib64/ld-linux-x86-64.so.2")
    assert result.path == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert result.symlinks == ["/lib64", "/usr/lib64/ld-linux-x86-64.so.2"]


def test_resolve_dotdot_stays_in_root(merged_usr: FileTree) -> None:
    result = merged_usr.resolve("/usr/bin/escape")
    assert result.path == "/usr/bin/python3.11"
    assert result.symlinks == ["/usr/bin/escape", "/usr/bin/python3"]
    assert merged_usr.resolve("/../../usr/./bin//python3").path == "/usr/bin/python3.11"


def test_resolve_without_following_last(merged_usr: FileTree) -> None:
    result = merged_usr.resolve("/lib/x86_64-linux-gnu/libc.so", follow_last=False)
    assert result.path == "/usr/lib/x86_64-linux-gnu/libc.so"
    assert result.symlinks == ["/lib"]


def test_resolve_loop_gives_none(merged_usr: FileTree) -> None:
    result = merged_usr.resolve("/loop/a")
    assert result.path is None
    assert len(result.symlinks) == MAX_SYMLINKS


def test_resolve_missing_and_dangling(merged_usr: FileTree) -> None:
    assert merged_usr.resolve("/usr/bin/perl").path is None
    dangling = merged_usr.resolve("/dangling")
    assert dangling.path is None
    assert dangling.symlinks == ["/dangling"]
    assert merged_usr.resolve("/dangling", follow_last=False).path == "/dangling"


def test_resolve_file_as_directory_gives_none(merged_usr: FileTree) -> None:
    assert merged_usr.resolve("/usr/bin/python3.11/x").path is None


def test_resolve_root(merged_usr: FileTree) -> None:
    assert merged_usr.resolve("/").path == "/"
    assert merged_usr.resolve("/usr/..").path == "/"


# -- images and real fixtures -------------------------------------------------------------------


def test_from_image_gzip_layers(tmp_path: Path) -> None:
    image = make_image(
        tmp_path,
        build_tar(reg("a", b"1"), reg("b", b"2")),
        build_tar(whiteout(".wh.a")),
        gzipped=True,
    )
    tree = FileTree.from_image(image)
    assert list(tree) == ["/", "/b"]


def test_from_image_checks_diff_id(tmp_path: Path) -> None:
    image = make_image(tmp_path, build_tar(reg("a", b"1")))
    blob = tmp_path / image.layers[0].digest.hex
    data = bytearray(blob.read_bytes())
    data[-1] = 1  # damage the end-of-archive padding, which tarfile never reads
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        FileTree.from_image(image)


DIVE_FINAL_PATHS_OUTSIDE_BIN = [
    "/",
    "/bin",
    "/dev",
    "/etc",
    "/etc/group",
    "/etc/localtime",
    "/etc/network",
    "/etc/network/if-down.d",
    "/etc/network/if-post-down.d",
    "/etc/network/if-pre-up.d",
    "/etc/network/if-up.d",
    "/etc/passwd",
    "/etc/shadow",
    "/home",
    "/root",
    "/root/.data",
    "/root/.data/saved.again2.txt",
    "/root/.data/tag.sh",
    "/root/.data/test.sh",
    "/root/.saved.txt",
    "/root/saved.txt",
    "/somefile.txt",
    "/tmp",
    "/tmp/saved.again1.txt",
    "/usr",
    "/usr/sbin",
    "/var",
    "/var/spool",
    "/var/spool/mail",
    "/var/www",
]


@pytest.fixture(scope="module")
def dive_tree(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> FileTree:
    archive = fixtures_dir / "dive" / "test-docker-image.tar"
    return FileTree.from_image(image_from_docker_archive(archive, tmp_path_factory.mktemp("dive")))


def test_dive_image_whiteouts(dive_tree: FileTree) -> None:
    outside_bin = [path for path in dive_tree if not path.startswith("/bin/")]
    assert outside_bin == DIVE_FINAL_PATHS_OUTSIDE_BIN
    assert not any(path.startswith("/root/example") for path in dive_tree)


def test_dive_image_hardlinks(dive_tree: FileTree) -> None:
    links = [entry for entry in dive_tree.entries() if entry.type is FileType.HARDLINK]
    assert len(links) == 392
    assert {link.link_target for link in links} == {"/bin/["}
    groups = dive_tree.hardlink_groups()
    assert list(groups) == ["/bin/["]
    assert len(groups["/bin/["]) == 393
    assert "/bin/ls" in groups["/bin/["]
    target = dive_tree.get("/bin/[")
    ls = dive_tree.get("/bin/ls")
    assert target is not None
    assert ls is not None
    assert (ls.digest, ls.size, ls.mode) == (target.digest, 1075464, 0o755)


def test_dive_image_layer_metadata(dive_tree: FileTree) -> None:
    saved = dive_tree.get("/root/saved.txt")
    tmp = dive_tree.get("/tmp")
    assert saved is not None
    assert tmp is not None
    assert (saved.layer, saved.mode, saved.size) == (13, 0o755, 6405)
    assert (tmp.mode, tmp.layer) == (0o1777, 11)
    assert dive_tree.get("/root").mode == 0o700  # type: ignore[union-attr]


def test_ggcr_whiteout_dir(fixtures_dir: Path, tmp_path: Path) -> None:
    archive = fixtures_dir / "go-containerregistry" / "whiteout_dir.tar"
    tree = FileTree.from_image(image_from_docker_archive(archive, tmp_path))
    assert list(tree) == ["/", "/a", "/a/baz", "/b", "/b/bar"]
    assert tree.get("/a").layer == 3  # type: ignore[union-attr]


def test_ggcr_overwritten_file(fixtures_dir: Path, tmp_path: Path) -> None:
    archive = fixtures_dir / "go-containerregistry" / "overwritten_file.tar"
    tree = FileTree.from_image(image_from_docker_archive(archive, tmp_path))
    assert list(tree) == ["/", "/bar.txt", "/foo.txt"]
    foo = tree.get("/foo.txt")
    assert foo is not None
    assert (foo.type, foo.link_target, foo.layer) == (FileType.SYMLINK, "bar.txt", 1)
    assert tree.resolve("/foo.txt").path == "/bar.txt"
