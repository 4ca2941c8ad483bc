"""remove_tree: the work folder goes away however deep or odd it is, and nothing outside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.fs.unpack import remove_tree

NAME = "n" * 100


def make_deep(root: Path, depth: int, sentinel: Path) -> None:
    """Make a chain of ``depth`` directories, each with a file and links to ``sentinel``.

    The whole path is far longer than PATH_MAX, so it is built through directory descriptors.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir(NAME, dir_fd=fd)
            file_fd = os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(file_fd, b"x")
            os.close(file_fd)
            os.symlink(str(sentinel), "to-sentinel", dir_fd=fd)
            os.symlink("/", "to-root", dir_fd=fd)
            child = os.open(NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            if level % 500 == 0:
                os.chmod(fd, 0o000)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    folder = tmp_path / "sentinel"
    folder.mkdir()
    (folder / "keep").write_text("outside\n")
    return folder


def test_deep_tree_removed(tmp_path, sentinel):
    work = tmp_path / "work"
    work.mkdir()
    try:
        make_deep(work, 3000, sentinel)
        remove_tree(work)
        assert not work.exists()
        assert (sentinel / "keep").read_text() == "outside\n"
    finally:
        # pytest removes old temporary folders with shutil.rmtree, which fails on this depth.
        subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=True)


def test_missing_path_ignored(tmp_path):
    remove_tree(tmp_path / "absent")


def test_symlink_removed_not_target(tmp_path, sentinel):
    link = tmp_path / "link"
    link.symlink_to(sentinel)
    remove_tree(link)
    assert not link.is_symlink()
    assert (sentinel / "keep").exists()


def test_read_only_tree_removed(tmp_path):
    work = tmp_path / "work"
    (work / "a" / "b").mkdir(parents=True)
    (work / "a" / "b" / "file").write_text("x")
    os.chmod(work / "a" / "b", 0o500)
    os.chmod(work / "a", 0o000)
    remove_tree(work)
    assert not work.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_mount_point_not_crossed(tmp_path):
    """A mount inside the tree stops the removal before anything on the mount is removed."""
    work = tmp_path / "work"
    (work / "mnt").mkdir(parents=True)
    script = (
        "import errno, sys\n"
        "from pathlib import Path\n"
        "from edgetrim.fs.unpack import remove_tree\n"
        "try:\n"
        "    remove_tree(Path(sys.argv[1]))\n"
        "except OSError as exc:\n"
        "    sys.exit(0 if exc.errno == errno.EXDEV else 1)\n"
        "sys.exit(2)\n"
    )
    result = subprocess.run(
        [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount -t tmpfs edgetrim-test "$1/mnt" && echo on-mount > "$1/mnt/file" '
            '&& "$2" -c "$3" "$1" && cat "$1/mnt/file"',
            "sh", str(work), sys.executable, script,
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "on-mount\n"
