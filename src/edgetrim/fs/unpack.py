"""Materialize the final filesystem of an image in a fresh directory, for example a runc rootfs.

Layers are untrusted, so every write is confined to the destination: it is a new directory,
every directory in it is one this module created, each parent is opened component by component
with ``O_NOFOLLOW``, and files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``. Nothing is
ever written through a symlink. Ownership, modes (setuid, setgid and sticky included), xattrs,
mtimes, hardlinks, device nodes and FIFOs are reproduced. What the process lacks the privilege
for (owners and device nodes without root, some xattr namespaces) is skipped with a warning.
"""

from __future__ import annotations

import collections
import errno
import functools
import io
import logging
import os
import shutil
import stat
from pathlib import Path

from edgetrim.errors import EdgetrimError, ImageFormatError, UnsafeLayerError
from edgetrim.fs.entry import FileEntry, FileType
from edgetrim.fs.safetar import TarMember, iter_contents
from edgetrim.fs.tree import ROOT, FileTree, parent_of
from edgetrim.image.model import Image

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DEVICE_TYPES = {FileType.CHAR_DEVICE: stat.S_IFCHR, FileType.BLOCK_DEVICE: stat.S_IFBLK}

# (layer index, member path) -> content digest -> the paths that share that inode.
_ContentGroups = dict[tuple[int, str], dict[str, list[str]]]


def unpack(image: Image, tree: FileTree, dest: Path, *, paths: set[str] | None = None) -> None:
    """Write the final filesystem of ``image`` (as ``tree`` describes it) into ``dest``.

    ``dest`` must not exist; it is created, with missing parents. With ``paths``, only those
    paths and the directories above them are written. Content comes from streaming the layers
    again, each member taken from the layer that ``tree`` records as its last writer. On any
    error the partial ``dest`` is removed. Raises EdgetrimError if ``dest`` exists, and
    ImageFormatError or UnsafeLayerError if the layers do not match ``tree`` or are hostile.
    """
    selected = _select(tree, paths)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(dest, 0o700)
    except FileExistsError:
        raise EdgetrimError(
            f"{dest}: unpack destination exists already; remove it or choose another path"
        ) from None
    log.info("unpacking %d paths into %s", len(selected), dest)
    try:
        with _Rootfs(dest) as rootfs:
            _populate(rootfs, image, tree, selected)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        if dest.exists():
            log.warning("could not remove the partial unpack in %s; remove it by hand", dest)
        raise


def _select(tree: FileTree, paths: set[str] | None) -> list[str]:
    if paths is None:
        return list(tree)
    missing = sorted(path for path in paths if path not in tree)
    if missing:
        raise ValueError(f"paths not in the image filesystem: {', '.join(missing[:5])}")
    chosen = set(paths)
    for path in paths:
        chosen.update(tree.parents(path))
    return sorted(chosen)


def _populate(rootfs: _Rootfs, image: Image, tree: FileTree, selected: list[str]) -> None:
    entries = [_entry(tree, path) for path in selected]
    directories = [entry for entry in entries if entry.is_dir and entry.path != ROOT]
    for entry in directories:
        rootfs.make_dir(entry.path)
    _write_contents(rootfs, image, tree, selected)
    for entry in entries:
        if entry.type in (FileType.SYMLINK, FileType.FIFO, *_DEVICE_TYPES):
            rootfs.make_node(entry)
    # Directories last and deepest first: their mtimes and read-only modes must not be
    # disturbed by the writes inside them.
    for entry in reversed(directories):
        rootfs.finish_dir(entry)
    rootfs.finish_dir(_entry(tree, ROOT))
    rootfs.report()


def _entry(tree: FileTree, path: str) -> FileEntry:
    entry = tree.get(path)
    assert entry is not None  # _select keeps only paths of the tree
    return entry


def _content_groups(tree: FileTree, selected: list[str]) -> _ContentGroups:
    groups: _ContentGroups = {}
    for path in selected:
        source = tree.content_source(path)
        if source is not None:
            member = (source.layer, source.path)
            groups.setdefault(member, {}).setdefault(source.digest, []).append(path)
    return groups


def _write_contents(rootfs: _Rootfs, image: Image, tree: FileTree, selected: list[str]) -> None:
    """Write every regular file and hardlink, each inode once, then link its other names.

    A member lands under a temporary name in the root and is linked into place only if its
    digest is the one the tree records for that path. So when one layer has a path twice,
    each version goes to the paths that the tree says have it: the last version to the path,
    an earlier one to a hardlink made before the path was written again.
    """
    groups = _content_groups(tree, selected)
    members_by_layer: dict[int, set[str]] = {}
    for layer, member_path in groups:
        members_by_layer.setdefault(layer, set()).add(member_path)
    temp = _temp_name(tree)
    for layer, member in iter_contents(image, members_by_layer):
        pending = groups.get((layer, member.entry.path))
        if pending:
            _write_member(rootfs, tree, temp, member, pending)
    missing = [(source, paths[0]) for source, left in groups.items() for paths in left.values()]
    if missing:
        (layer, member_path), path = missing[0]
        raise ImageFormatError(
            f"{image.layers[layer].label}: no member {member_path} with the content that "
            f"{path} should have; the file tree was built from a different image"
        )


def _write_member(
    rootfs: _Rootfs, tree: FileTree, temp: str, member: TarMember, pending: dict[str, list[str]]
) -> None:
    paths: list[str] | None = None
    with rootfs.create_temp(temp) as out:
        digest = member.read_content(out)
        paths = pending.pop(digest, None)
        if paths is not None:
            out.flush()
            rootfs.set_metadata(_entry(tree, paths[0]), fd=out.fileno())
    try:
        for path in paths or ():
            rootfs.link_temp(temp, path)
    finally:
        os.unlink(temp, dir_fd=rootfs.fd)


def _temp_name(tree: FileTree) -> str:
    """Return a name in the root that no path of the image uses."""
    count = 0
    while f"/.edgetrim-partial-{count}" in tree:
        count += 1
    return f".edgetrim-partial-{count}"


class _Rootfs:
    """The destination directory, opened once, with helpers that never follow a symlink."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.fd = os.open(dest, _DIR_FLAGS)
        self._cached: tuple[str, int] | None = None
        self._is_root = os.geteuid() == 0
        self._skipped: collections.Counter[str] = collections.Counter()

    def __enter__(self) -> _Rootfs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._drop_cache()
        os.close(self.fd)

    # -- opening parents ---------------------------------------------------------------------

    def parent(self, path: str) -> tuple[int, str]:
        """Return an open fd of the parent directory of ``path`` and the last component."""
        directory, name = parent_of(path), path.rsplit("/", 1)[1]
        if directory == ROOT:
            return self.fd, name
        if self._cached and self._cached[0] == directory:
            return self._cached[1], name
        self._drop_cache()
        self._cached = (directory, self._open_dir(directory))
        return self._cached[1], name

    def _open_dir(self, directory: str) -> int:
        fd = self.fd
        try:
            for part in directory.strip("/").split("/"):
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                if fd != self.fd:
                    os.close(fd)
                fd = next_fd
        except OSError as exc:
            if fd != self.fd:
                os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeLayerError(
                    f"{self.dest}: {directory} is not a real directory inside the destination; "
                    "writes through it are rejected"
                ) from exc
            raise
        return fd

    def _drop_cache(self) -> None:
        if self._cached:
            os.close(self._cached[1])
            self._cached = None

    # -- creating ----------------------------------------------------------------------------

    def make_dir(self, path: str) -> None:
        """Create a directory, private until :meth:`finish_dir` gives it its real mode."""
        fd, name = self.parent(path)
        os.mkdir(name, 0o700, dir_fd=fd)

    def create_temp(self, name: str) -> io.BufferedWriter:
        """Open a new file ``name`` in the root for writing; it must not exist."""

        def opener(path: str, _flags: int) -> int:
            return os.open(path, _NEW_FILE_FLAGS, 0o600, dir_fd=self.fd)

        return open(name, "wb", opener=opener)

    def link_temp(self, temp: str, path: str) -> None:
        """Give the temporary file the name ``path``; fails if ``path`` exists."""
        fd, name = self.parent(path)
        os.link(temp, name, src_dir_fd=self.fd, dst_dir_fd=fd, follow_symlinks=False)

    def make_node(self, entry: FileEntry) -> None:
        """Create a symlink, FIFO or device node and set its metadata."""
        fd, name = self.parent(entry.path)
        if entry.type is FileType.SYMLINK:
            os.symlink(entry.link_target, name, dir_fd=fd)
        elif entry.type is FileType.FIFO:
            os.mkfifo(name, 0o600, dir_fd=fd)
        elif not self._make_device(entry, fd, name):
            return
        self.set_metadata(entry, dir_fd=fd, name=name)

    def _make_device(self, entry: FileEntry, fd: int, name: str) -> bool:
        if not self._is_root:
            self._skip("device nodes not created (needs root)", entry.path)
            return False
        device = os.makedev(entry.devmajor, entry.devminor)
        try:
            os.mknod(name, 0o600 | _DEVICE_TYPES[entry.type], device, dir_fd=fd)
        except PermissionError as exc:
            self._skip(f"device nodes not created ({exc.strerror})", entry.path)
            return False
        return True

    def finish_dir(self, entry: FileEntry) -> None:
        """Set a directory's owner, mode, xattrs and mtime, once nothing more goes into it."""
        if entry.path == ROOT:
            self.set_metadata(entry, fd=self.fd)
            return
        parent_fd, name = self.parent(entry.path)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            self.set_metadata(entry, fd=fd)
        finally:
            os.close(fd)

    # -- metadata ----------------------------------------------------------------------------

    def set_metadata(
        self, entry: FileEntry, *, fd: int | None = None, dir_fd: int | None = None, name: str = ""
    ) -> None:
        """Set owner, mode, xattrs and mtime, in that order, on ``fd`` or on ``name`` in ``dir_fd``.

        The order matters because chown clears setuid, setgid and security.capability.
        """
        if fd is not None:
            chown = functools.partial(os.chown, fd)
            chmod = functools.partial(os.chmod, fd)
            setxattr = functools.partial(os.setxattr, fd)
            utime = functools.partial(os.utime, fd)
        else:
            chown = functools.partial(os.chown, name, dir_fd=dir_fd, follow_symlinks=False)
            # fchmodat cannot refuse to follow a symlink; symlinks are never chmod-ed below.
            chmod = functools.partial(os.chmod, name, dir_fd=dir_fd)
            # setxattr takes no dir_fd. Every directory above was created here, so the path
            # crosses no symlink.
            path = f"{self.dest}{entry.path}"
            setxattr = functools.partial(os.setxattr, path, follow_symlinks=False)
            utime = functools.partial(os.utime, name, dir_fd=dir_fd, follow_symlinks=False)

        try:
            chown(entry.uid, entry.gid)
        except OSError as exc:
            # EINVAL: the ID is not mapped in this user namespace.
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
            self._skip(f"owners not set ({exc.strerror})", entry.path)
        if not entry.is_symlink:
            chmod(entry.mode)
        for key, value in entry.xattrs.items():
            try:
                setxattr(key, value)
            except OSError as exc:
                self._skip(f"xattr {key} not set ({exc.strerror})", entry.path)
        nanoseconds = entry.mtime * 1_000_000_000
        utime(ns=(nanoseconds, nanoseconds))

    def _skip(self, feature: str, path: str) -> None:
        if not self._skipped[feature]:
            log.warning("%s: %s", path, feature)
        else:
            log.debug("%s: %s", path, feature)
        self._skipped[feature] += 1

    def report(self) -> None:
        """Log how many paths each skipped feature affected."""
        for feature, count in self._skipped.items():
            if count > 1:
                log.warning("%s: %s on %d paths", self.dest, feature, count)
