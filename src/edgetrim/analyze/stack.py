"""Replay an image's layers in order and account for every stored copy of file content.

A final :class:`~edgetrim.fs.tree.FileTree` keeps only what is visible at the end. Waste
analysis also needs what the layers store but hide: a copy replaced by a later layer
(overwritten) and a copy removed by a whiteout or an opaque directory (deleted). The
:class:`LayerStack` applies the same OCI rules as the tree, and tracks how many paths still
refer to each stored copy, so that a copy counts as hidden only when its last path goes. A
hardlinked inode is one copy however many paths it has.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from edgetrim.errors import UnsafeLayerError
from edgetrim.fs.entry import FileEntry, FileType
from edgetrim.fs.safetar import OPAQUE_MARKER
from edgetrim.fs.tree import (
    opaque_not_directory_error,
    root_not_directory_error,
    under_symlink_error,
)

log = logging.getLogger(__name__)

ROOT = "/"
# Linux gives up with ELOOP after 40 symlinks in one lookup (MAXSYMLINKS, fs/namei.c).
MAX_SYMLINKS = 40


class Hidden(enum.Enum):
    """Why a stored copy is not visible in the final filesystem."""

    OVERWRITTEN = "overwritten"
    DELETED = "deleted"


@dataclass(slots=True)
class StoredCopy:
    """The content of one regular-file member of one layer tar.

    ``path`` is the member's path in its layer. ``hidden`` is None while some path of the
    final filesystem still refers to the copy; ``hidden_in`` is then the index of the layer
    whose entry or whiteout removed the last such path. ``elf_type`` is ``e_type`` of an ELF
    header at the start of the content (2 executable, 3 shared object or PIE), else 0.
    """

    layer: int
    path: str
    size: int
    digest: str
    elf_type: int = 0
    hidden: Hidden | None = None
    hidden_in: int = -1


@dataclass(frozen=True)
class LayerChanges:
    """One layer's members in tar order: entries, whiteouts and opaque directories.

    ``copies`` has one item per item of ``entries``: the stored copy id of a regular file's
    content, and None for other entries.
    """

    entries: list[FileEntry]
    copies: list[int | None]
    whiteouts: list[str]
    opaque_dirs: list[str]


def parent_of(path: str) -> str:
    """Return the parent of a normalized absolute path; the parent of ``/`` is ``/``."""
    return path.rsplit("/", 1)[0] or ROOT


def _join(directory: str, name: str) -> str:
    return directory + name if directory == ROOT else f"{directory}/{name}"


def _is_normal(path: str) -> bool:
    """Tell whether ``path`` is absolute, without empty, ``.`` or ``..`` components."""
    if path == ROOT:
        return True
    wrapped = path + "/"
    return (
        path.startswith("/")
        and "//" not in wrapped
        and "/./" not in wrapped
        and "/../" not in wrapped
    )


def _ancestors(path: str) -> list[str]:
    found: list[str] = []
    while path != ROOT:
        path = parent_of(path)
        found.append(path)
    return found[::-1]


class LayerStack:
    """The filesystem after the layers applied so far, with the fate of every stored copy."""

    def __init__(self) -> None:
        self.entries: dict[str, FileEntry] = {ROOT: _directory(ROOT, 0)}
        self.children: dict[str, set[str]] = {ROOT: set()}
        # path -> stored copy id, for regular files and hardlinks to them.
        self.copy_of: dict[str, int] = {}
        self.copies: list[StoredCopy] = []
        self._references: list[int] = []
        self._dir_cache: dict[str, tuple[str | None, int]] = {ROOT: (ROOT, 0)}

    def add_copy(self, copy: StoredCopy) -> int:
        """Register the content of a regular-file member and return its copy id."""
        self.copies.append(copy)
        self._references.append(0)
        return len(self.copies) - 1

    def apply(self, layer: int, changes: LayerChanges, layer_name: str) -> None:
        """Apply one layer: opaque directories, then whiteouts, then entries in tar order.

        This is the order :meth:`edgetrim.fs.tree.FileTree.apply_layer` uses: a layer's
        whiteouts delete only what lower layers wrote. Raises UnsafeLayerError, with the
        messages of FileTree, where FileTree raises it: for an entry, whiteout, opaque marker
        or hardlink target under a symlink or a non-directory, an opaque marker in a symlink or
        in a path that the layer makes a non-directory, and a hardlink to a missing path.
        """
        self._dir_cache = {ROOT: (ROOT, 0)}
        for path in changes.opaque_dirs:
            self._clear_opaque(path, layer, layer_name)
        for path in changes.whiteouts:
            self._check_parents(path, layer_name, "whiteout of")
            if path in self.entries and path != ROOT:
                self._remove(path, layer, Hidden.DELETED)
        for entry, copy in zip(changes.entries, changes.copies, strict=True):
            self._add(entry, copy, layer, layer_name)
        for path in changes.opaque_dirs:
            found = self.entries.get(path)
            if found is None:
                self._ensure_parents(path, layer, layer_name)
                self._insert(_directory(path, layer))
            elif not found.is_dir:
                raise opaque_not_directory_error(layer_name, path, found)

    # -- queries on the current filesystem -----------------------------------------------------

    def final_paths(self) -> Iterator[tuple[str, FileEntry]]:
        """Yield (path, entry) for every path, in no particular order."""
        return iter(self.entries.items())

    def resolve_directory(self, path: str) -> str | None:
        """Follow symlinks in every component of the directory ``path``; None if it is missing.

        Absolute targets restart at the image root and ``..`` stops at the root, so the
        lookup never leaves the image. Used to place the paths a package database lists,
        which may go through a symlinked directory such as ``/bin -> usr/bin``.
        """
        return self._lookup(path)[0]

    def canonical(self, path: str) -> str | None:
        """Return ``path`` with its parent directories resolved, or None if one is missing."""
        if path == ROOT:
            return ROOT
        parent, _, name = path.rpartition("/")
        resolved = self._lookup(parent or ROOT)[0]
        if resolved is None:
            return None
        return _join(resolved, name)

    def _lookup(self, path: str) -> tuple[str | None, int]:
        """Return what :meth:`resolve_directory` returns and the number of symlinks followed.

        Lookups are cached until the next layer is applied. A normalized path continues the
        cached lookup of its nearest ancestor, one component at a time, with the state that a
        lookup from the root has there. So the paths of a package database share the lookups
        of their parents.
        """
        cache = self._dir_cache
        found = cache.get(path)
        if found is not None:
            return found
        if not _is_normal(path):
            found = cache[path] = self._walk(path.split("/"), ROOT, 0)
            return found
        below: list[tuple[str, str]] = []
        current = path
        while current not in cache:
            parent, _, name = current.rpartition("/")
            below.append((current, name))
            current = parent or ROOT
        resolved, followed = cache[current]
        for prefix, name in reversed(below):
            if resolved is not None:
                candidate = _join(resolved, name)
                entry = self.entries.get(candidate)
                if entry is None:
                    resolved = None
                elif entry.type is FileType.DIRECTORY:
                    resolved = candidate
                elif entry.type is FileType.SYMLINK:
                    resolved, followed = self._walk([name], resolved, followed)
                else:
                    resolved = None
            cache[prefix] = (resolved, followed)
        return resolved, followed

    def _walk(self, parts: list[str], current: str, followed: int) -> tuple[str | None, int]:
        """Look up the path components ``parts`` from the directory ``current``.

        ``followed`` counts the symlinks followed before; more than :data:`MAX_SYMLINKS` in
        all make the lookup fail, as ELOOP does in Linux.
        """
        pending = [part for part in parts if part not in ("", ".")][::-1]
        while pending:
            name = pending.pop()
            if name == "..":
                current = parent_of(current)
                continue
            candidate = _join(current, name)
            entry = self.entries.get(candidate)
            if entry is None:
                return None, followed
            if entry.is_symlink:
                followed += 1
                if followed > MAX_SYMLINKS:
                    return None, followed
                if entry.link_target.startswith("/"):
                    current = ROOT
                parts = [part for part in entry.link_target.split("/") if part not in ("", ".")]
                pending.extend(reversed(parts))
                continue
            if not entry.is_dir:
                return None, followed
            current = candidate
        return current, followed

    # -- changes -------------------------------------------------------------------------------

    def _add(self, entry: FileEntry, copy: int | None, layer: int, layer_name: str) -> None:
        if entry.path == ROOT:
            if not entry.is_dir:
                raise root_not_directory_error(layer_name, entry)
            self.entries[ROOT] = entry
            return
        self._ensure_parents(entry.path, layer, layer_name)
        if entry.type is FileType.HARDLINK:
            entry, copy = self._link(entry, layer_name)
        old = self.entries.get(entry.path)
        if old is not None and old.is_dir and entry.is_dir:
            self.entries[entry.path] = entry
            return
        if old is not None:
            self._remove(entry.path, layer, Hidden.OVERWRITTEN)
        self._insert(entry)
        if copy is not None:
            self.copy_of[entry.path] = copy
            self._references[copy] += 1

    def _link(self, entry: FileEntry, layer_name: str) -> tuple[FileEntry, int | None]:
        self._check_parents(entry.link_target, layer_name, f"hardlink {entry.path} to")
        target = self.entries.get(entry.link_target)
        if target is None or target.is_dir or target.path == entry.path:
            raise UnsafeLayerError(
                f"{layer_name}: hardlink {entry.path} -> {entry.link_target} is invalid: the "
                "target is missing, a directory or the link itself; the layer is malformed"
            )
        linked = dataclasses.replace(target, path=entry.path, layer=entry.layer)
        copy = self.copy_of.get(target.path)
        if copy is not None:
            linked.type = FileType.HARDLINK
            linked.link_target = target.link_target or target.path
        return linked, copy

    def _clear_opaque(self, path: str, layer: int, layer_name: str) -> None:
        self._check_parents(path, layer_name, "opaque directory")
        entry = self.entries.get(path)
        if entry is None:
            return
        if entry.is_symlink:
            # Unpacking would clear the directory that the symlink points to.
            marker = _join(path, OPAQUE_MARKER)
            raise under_symlink_error(layer_name, "opaque marker", marker, entry)
        if entry.is_dir:
            for child in list(self.children.get(path, ())):
                self._remove(child, layer, Hidden.DELETED)
        elif path != ROOT:
            self._remove(path, layer, Hidden.DELETED)

    def _remove(self, path: str, layer: int, cause: Hidden) -> None:
        """Remove ``path`` and everything under it, and mark copies left with no path hidden."""
        stack = [path]
        while stack:
            current = stack.pop()
            stack.extend(self.children.pop(current, ()))
            del self.entries[current]
            copy = self.copy_of.pop(current, None)
            if copy is not None:
                self._release(copy, layer, cause)
        self.children[parent_of(path)].discard(path)

    def _release(self, copy: int, layer: int, cause: Hidden) -> None:
        self._references[copy] -= 1
        if self._references[copy] == 0:
            stored = self.copies[copy]
            stored.hidden = cause
            stored.hidden_in = layer

    def _insert(self, entry: FileEntry) -> None:
        self.entries[entry.path] = entry
        self.children[parent_of(entry.path)].add(entry.path)
        if entry.is_dir:
            self.children.setdefault(entry.path, set())

    def _check_parents(self, path: str, layer_name: str, description: str) -> None:
        """Raise UnsafeLayerError if an existing ancestor of ``path`` is not a directory.

        ``description`` names what is at ``path`` in the message, such as "entry".
        """
        parent = self.entries.get(parent_of(path))
        if parent is not None and parent.type is FileType.DIRECTORY:
            # Every ancestor of a path in the stack is a directory in the stack.
            return
        for ancestor in _ancestors(path):
            entry = self.entries.get(ancestor)
            if entry is None or entry.type is FileType.DIRECTORY:
                continue
            if entry.type is FileType.SYMLINK:
                raise under_symlink_error(layer_name, description, path, entry)
            raise UnsafeLayerError(
                f"{layer_name}: {description} {path} lies under {ancestor}, which is a "
                f"{entry.type.value}, not a directory; the layer is malformed or hostile"
            )

    def _ensure_parents(self, path: str, layer: int, layer_name: str) -> None:
        parent = self.entries.get(parent_of(path))
        if parent is not None and parent.type is FileType.DIRECTORY:
            return
        self._check_parents(path, layer_name, "entry")
        for ancestor in _ancestors(path):
            if ancestor not in self.entries:
                self._insert(_directory(ancestor, layer))


def _directory(path: str, layer: int) -> FileEntry:
    return FileEntry(path=path, type=FileType.DIRECTORY, mode=0o755, layer=layer)


def copies_in_use(stack: LayerStack) -> dict[int, list[str]]:
    """Map each copy still visible to its sorted final paths (several for a hardlinked inode)."""
    paths: dict[int, list[str]] = {}
    for path, copy in stack.copy_of.items():
        paths.setdefault(copy, []).append(path)
    for group in paths.values():
        group.sort()
    return paths


def hidden_copies(copies: Iterable[StoredCopy]) -> Iterator[StoredCopy]:
    """Yield the copies that no final path refers to."""
    return (copy for copy in copies if copy.hidden is not None)
