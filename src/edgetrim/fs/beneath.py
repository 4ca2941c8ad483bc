"""Open files inside an unpacked rootfs without following symlinks out of it.

A container run can change its rootfs, for example swap a directory for a symlink to ``/``.
Every read edgetrim makes from a rootfs after a run goes through :func:`open_beneath`, which
opens one component at a time with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK keeps a FIFO planted in the rootfs from blocking the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


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
