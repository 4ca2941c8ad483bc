"""Open files inside an unpacked rootfs without following symlinks out of it.

Every read edgetrim makes from an unpacked rootfs goes through :func:`open_beneath`, which opens
one component at a time with ``O_NOFOLLOW``, so a symlink in the rootfs never leads outside it.
:class:`RootfsReader` adds the image's own symlink resolution on top: it looks a path up in the
image's :class:`FileTree` first, so ``/etc/passwd -> ../usr/share/passwd`` is read as the
container would see it, and only then opens the resulting path, which crosses no symlink.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from edgetrim.fs.entry import FileType
from edgetrim.fs.tree import FileTree

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK keeps a FIFO planted in the rootfs from blocking the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CONTENT_TYPES = (FileType.REGULAR, FileType.HARDLINK)


def open_beneath(root: Path, path: str) -> BinaryIO:
    """Open the regular file ``root/path`` for reading.

    Raises OSError if any component is a symlink, ``..`` or missing, or if the file is not a
    regular file. ``path`` is an absolute path inside the image, such as ``/etc/passwd``.
    """
    parts = [part for part in path.split("/") if part and part != "."]
    if not parts or ".." in parts:
        raise OSError(errno.EINVAL, "not a file path inside the rootfs", path)
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            child = os.open(part, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = child
        handle = os.open(parts[-1], _FILE_FLAGS, dir_fd=directory)
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise OSError(errno.EINVAL, "not a regular file", path)
    os.set_blocking(handle, True)
    return os.fdopen(handle, "rb")


class RootfsReader:
    """Read the files of an image from a rootfs that was unpacked from it and never run.

    Paths are resolved in ``tree``, the image's own record of its filesystem, with symlinks
    followed inside the image root as the container resolves them. The rootfs only supplies
    the content, and a file whose size differs from the tree's record is treated as missing.
    """

    def __init__(self, tree: FileTree, root: Path):
        self.tree = tree
        self.root = root

    def open(self, path: str) -> BinaryIO:
        """Open the regular file that ``path`` names in the image, following its symlinks.

        Raises OSError (ENOENT) if the path does not resolve to a regular file of the image,
        and OSError if the rootfs does not hold it as the tree records it.
        """
        resolved = self.tree.resolve(path).path
        entry = self.tree.get(resolved) if resolved is not None else None
        if resolved is None or entry is None or entry.type not in _CONTENT_TYPES:
            raise OSError(errno.ENOENT, "not a regular file in the image", path)
        stream = open_beneath(self.root, resolved)
        if os.fstat(stream.fileno()).st_size != entry.size:
            stream.close()
            raise OSError(errno.EIO, "the unpacked file differs from the image", path)
        return stream

    def read_text(self, path: str, *, limit: int = 1 << 20) -> str:
        """Return up to ``limit`` bytes of a regular file as text, or "" if it is missing."""
        try:
            with self.open(path) as stream:
                return stream.read(limit).decode("utf-8", "replace")
        except OSError:
            return ""
