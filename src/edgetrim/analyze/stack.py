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

    ``copies`` maps the index of a regular-file entry in ``entries`` to its stored copy id.
    """

    entries: list[FileEntry]
    copies: dict[int, int]
    whiteouts: list[str]
    opaque_dirs: list[str]


def parent_of(path: str) -> str:
    """Return the parent of a normalized absolute path; the parent of ``/`` is ``/``."""
    return path.rsplit("/", 1)[0] or ROOT


def _join(directory: str, name: str) -> str:
    return directory + name if directory == ROOT else f"{directory}/{name}"


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
        self._dir_cache: dict[str, str | None] = {}

    def add_copy(self, copy: StoredCopy) -> int:
        """Register the content of a regular-file member and return its copy id."""
        self.copies.append(copy)
        self._references.append(0)
        return len(self.copies) - 1

    def apply(self, layer: int, changes: LayerChanges, layer_name: str) -> None:
        """Apply one layer: opaque directories, then whiteouts, then entries in tar order.

        This is the order :meth:`edgetrim.fs.tree.FileTree.apply_layer` uses: a layer's
        whiteouts delete only what lower layers wrote. Raises UnsafeLayerError for an entry
        under a symlink or a non-directory and for a hardlink to a missing path.
        """
        self._dir_cache.clear()
        for path in changes.opaque_dirs:
            self._clear_opaque(path, layer, layer_name)
        for path in changes.whiteouts:
            self._check_parents(path, layer_name)
            if path in self.entries and path != ROOT:
                self._remove(path, layer, Hidden.DELETED)
        for position, entry in enumerate(changes.entries):
            self._add(entry, changes.copies.get(position), layer, layer_name)
        for path in changes.opaque_dirs:
            if path not in self.entries:
                self._ensure_parents(path, layer, layer_name)
                self._insert(_directory(path, layer))

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
        if path in self._dir_cache:
            return self._dir_cache[path]
        resolved = self._resolve(path)
        self._dir_cache[path] = resolved
        return resolved

    def canonical(self, path: str) -> str | None:
        """Return ``path`` with its parent directories resolved, or None if one is missing."""
        if path == ROOT:
            return ROOT
        parent = self.resolve_directory(parent_of(path))
        if parent is None:
            return None
        return _join(parent, path.rsplit("/", 1)[1])

    def _resolve(self, path: str) -> str | None:
        pending = [part for part in path.split("/") if part not in ("", ".")][::-1]
        current = ROOT
        followed = 0
        while pending:
            name = pending.pop()
            if name == "..":
                current = parent_of(current)
                continue
            candidate = _join(current, name)
            entry = self.entries.get(candidate)
            if entry is None:
                return None
            if entry.is_symlink:
                followed += 1
                if followed > MAX_SYMLINKS:
                    return None
                if entry.link_target.startswith("/"):
                    current = ROOT
                parts = [part for part in entry.link_target.split("/") if part not in ("", ".")]
                pending.extend(reversed(parts))
                continue
            if not entry.is_dir:
                return None
            current = candidate
        return current

    # -- changes -------------------------------------------------------------------------------

    def _add(self, entry: FileEntry, copy: int | None, layer: int, layer_name: str) -> None:
        if entry.path == ROOT:
            if entry.is_dir:
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
        self._check_parents(path, layer_name)
        entry = self.entries.get(path)
        if entry is None:
            return
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

    def _check_parents(self, path: str, layer_name: str) -> None:
        for ancestor in _ancestors(path):
            entry = self.entries.get(ancestor)
            if entry is not None and not entry.is_dir:
                raise UnsafeLayerError(
                    f"{layer_name}: {path} lies under {ancestor}, which is a "
                    f"{entry.type.value}, not a directory; the layer is malformed or hostile"
                )

    def _ensure_parents(self, path: str, layer: int, layer_name: str) -> None:
        self._check_parents(path, layer_name)
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
