"""The container's user is looked up in the image's /etc/passwd and /etc/group, symlinks too."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetrim.errors import ContainerRunError
from edgetrim.fs.beneath import RootfsReader
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import unpack
from edgetrim.trace.bundle import resolve_user
from tests.fs.layers import build_tar, directory, make_image, reg, symlink

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nsensor:x:991:991::/var/lib/sensor:/bin/sh\n"
GROUP = b"root:x:0:\nsensor:x:991:\ndialout:x:20:sensor\n"


def unpacked(tmp_path: Path, *members) -> RootfsReader:
    image = make_image(tmp_path / "blobs", build_tar(*members))
    tree = FileTree.from_image(image)
    unpack(image, tree, tmp_path / "image" / "rootfs")
    return RootfsReader(tree, tmp_path / "image" / "rootfs")


def test_symlinked_passwd_and_group_read(tmp_path):
    files = unpacked(
        tmp_path,
        directory("etc"),
        directory("usr/share/accounts"),
        reg("usr/share/accounts/passwd", PASSWD),
        reg("usr/share/accounts/group", GROUP),
        symlink("etc/passwd", "../usr/share/accounts/passwd"),
        symlink("etc/group", "/usr/share/accounts/group"),
    )
    assert resolve_user("sensor", files, source="test") == (991, 991, [20], "/var/lib/sensor")
    assert resolve_user("sensor:dialout", files, source="test") == (
        991,
        20,
        [],
        "/var/lib/sensor",
    )


def test_passwd_symlink_stays_in_image(tmp_path):
    """A symlink that climbs out of the rootfs on the host resolves inside the image instead."""
    outside = tmp_path / "image" / "outside"
    outside.mkdir(parents=True)
    (outside / "passwd").write_bytes(PASSWD)
    files = unpacked(
        tmp_path,
        directory("etc"),
        symlink("etc/passwd", "../../outside/passwd"),
    )
    assert (tmp_path / "image" / "rootfs" / "etc" / "passwd").resolve() == outside / "passwd"
    with pytest.raises(ContainerRunError, match="not in the image's /etc/passwd"):
        resolve_user("sensor", files, source="test")
