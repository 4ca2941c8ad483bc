"""The closure and the layer writer read the image as it was, and cope with hostile paths."""

from __future__ import annotations

import logging
import os
import tarfile
import time
from pathlib import Path

from edgetrim.fs.beneath import RootfsReader
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import unpack
from edgetrim.minimize.build import build_minimized_image
from edgetrim.minimize.closure import ClosureBuilder
from tests.fs.layers import build_tar, directory, make_image, reg, symlink


def unpacked_image(tmp_path: Path, *members):
    image = make_image(tmp_path / "blobs", build_tar(*members))
    tree = FileTree.from_image(image)
    unpack(image, tree, tmp_path / "rootfs")
    return image, tree, RootfsReader(tree, tmp_path / "rootfs")


def test_deep_missing_paths_keep_existing_parent(tmp_path):
    """A run that made a directory chain 1,500 deep reports every level, which stays fast."""
    _, _, files = unpacked_image(tmp_path, directory("var/tmp", mode=0o1777))
    closure = ClosureBuilder(files, env=[])
    paths = ["/var/tmp" + "/d" * depth for depth in range(1, 1501)]
    started = time.monotonic()
    closure.add_paths(paths, "touched by the traced run")
    assert time.monotonic() - started < 20
    assert "/var/tmp" in closure.keep
    assert not any(path.startswith("/var/tmp/d") for path in closure.keep.paths())


def test_reader_follows_image_symlinks(tmp_path):
    _, _, files = unpacked_image(
        tmp_path,
        reg("usr/lib/os-release", b"ID=debian\n"),
        symlink("etc/os-release", "../usr/lib/os-release"),
    )
    assert files.read_text("/etc/os-release") == "ID=debian\n"


def test_reader_ignores_changed_file(tmp_path):
    _, _, files = unpacked_image(tmp_path, reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"))
    (tmp_path / "rootfs" / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\nx\n")
    assert files.read_text("/etc/passwd") == ""


def layer_member(image, path: str) -> bytes:
    with image.layers[0].read_tar() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if info.name == path.lstrip("/"):
                content = tar.extractfile(info)
                assert content is not None
                return content.read()
    raise AssertionError(f"{path} is not in the layer")


def test_layer_content_checked_against_image(tmp_path, caplog):
    """A kept file that differs in the unpacked copy is taken from the layers instead."""
    image, tree, _ = unpacked_image(
        tmp_path,
        directory("app"),
        reg("app/run", b"#!/bin/sh\necho original\n", mode=0o755),
        reg("app/data", b"data\n"),
    )
    (tmp_path / "rootfs" / "app" / "run").write_bytes(b"#!/bin/sh\necho changed!\n")
    work = tmp_path / "work"
    work.mkdir()
    with caplog.at_level(logging.DEBUG, logger="edgetrim.fs.layerwrite"):
        minimized = build_minimized_image(
            image, tree, {"/", "/app", "/app/run", "/app/data"}, work,
            kept_summary="kept 2 of 2 files", content_root=tmp_path / "rootfs",
        )  # fmt: skip
    assert layer_member(minimized, "/app/run") == b"#!/bin/sh\necho original\n"
    assert layer_member(minimized, "/app/data") == b"data\n"
    assert "/app/run in" in caplog.text
    assert "differs from the image" in caplog.text
    assert "1 kept files to read from the layers" in caplog.text
    assert [entry.name for entry in os.scandir(work)] == ["minimized-layer.tar.gz"]
