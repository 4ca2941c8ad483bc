"""One path of an image's filesystem and the metadata a layer tar records for it."""

from __future__ import annotations

import enum
import stat
from dataclasses import dataclass, field


class FileType(enum.Enum):
    """The kind of a filesystem entry, as a tar header records it."""

    REGULAR = "file"
    DIRECTORY = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR_DEVICE = "char"
    BLOCK_DEVICE = "block"
    FIFO = "fifo"


@dataclass
class FileEntry:
    """A path in the merged filesystem of an image.

    ``path`` is absolute and normalized (``/usr/bin/python3``; the root is ``/``). ``mode``
    holds the permission bits including setuid, setgid and sticky, without the file-type bits.
    ``link_target`` is the symlink's target as written, or for a hardlink the absolute path of
    the regular file it shares an inode with (the start of a chain of links, which a later
    layer may have deleted or replaced). ``digest`` is the sha256 hex of a regular file's
    content (for a hardlink, of the content it shares). ``layer`` is the index of the layer
    that last wrote the entry, base layer 0. For a hardlink, ``link_layer`` is the index of the
    layer whose tar holds that content as the regular-file member ``link_target``. A hardlink's
    mode, owner, mtime and xattrs are copied from the file it links to, because an inode has
    only one set of them.
    """

    path: str
    type: FileType
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    link_target: str = ""
    digest: str = ""
    layer: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    link_layer: int = 0

    @property
    def is_dir(self) -> bool:
        return self.type is FileType.DIRECTORY

    @property
    def is_regular(self) -> bool:
        return self.type is FileType.REGULAR

    @property
    def is_symlink(self) -> bool:
        return self.type is FileType.SYMLINK

    @property
    def mode_string(self) -> str:
        """The mode as ``ls -l`` shows it, for reports."""
        type_bits = {
            FileType.DIRECTORY: stat.S_IFDIR,
            FileType.SYMLINK: stat.S_IFLNK,
            FileType.CHAR_DEVICE: stat.S_IFCHR,
            FileType.BLOCK_DEVICE: stat.S_IFBLK,
            FileType.FIFO: stat.S_IFIFO,
        }.get(self.type, stat.S_IFREG)
        return stat.filemode(type_bits | self.mode)
