"""The merged filesystem of an image: every path of the final root and its metadata.

A :class:`FileTree` applies the layers of an image in order with OCI semantics (whiteouts,
opaque directories, replacement of directories by files) and keeps only the entries, never file
content. Each layer is read once, through :mod:`edgetrim.fs.safetar`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from edgetrim.errors import UnsafeLayerError
from edgetrim.fs.entry import FileEntry, FileType
from edgetrim.fs.safetar import OPAQUE_MARKER, TarMember, iter_layer
from edgetrim.image.model import Image

log = logging.getLogger(__name__)

# Linux gives up with ELOOP after 40 symlinks in one lookup (MAXSYMLINKS, fs/namei.c).
MAX_SYMLINKS = 40

ROOT = "/"


@dataclass
class Resolution:
    """The outcome of a path lookup: the existing path reached, and every symlink crossed.

    ``path`` is None when a component is missing, a non-directory is used as a directory, or
    the lookup crosses more than :data:`MAX_SYMLINKS` symlinks.
    """

    path: str | None
    symlinks: list[str]


class ContentSource(NamedTuple):
    """The location of a file's content: layer index, member path in that layer, and digest.

    Two paths with equal sources share one inode. The digest is part of the key because a layer
    can write a path twice, and a hardlink made in between keeps the first content.
    """

    layer: int
    path: str
    digest: str


def parent_of(path: str) -> str:
    """Return the parent of a normalized absolute path; the parent of ``/`` is ``/``."""
    return path.rsplit("/", 1)[0] or ROOT


def join(directory: str, name: str) -> str:
    """Return the path of ``name`` inside the normalized absolute path ``directory``."""
    return directory + name if directory == ROOT else f"{directory}/{name}"


def _implicit_dir(path: str, layer: int) -> FileEntry:
    return FileEntry(path=path, type=FileType.DIRECTORY, mode=0o755, layer=layer)


def under_symlink_error(
    layer_name: str, description: str, path: str, link: FileEntry
) -> UnsafeLayerError:
    """Return the error for a layer that writes ``path`` through the symlink ``link``.

    ``description`` names what is written, such as "entry" or "opaque marker".
    """
    return UnsafeLayerError(
        f"{layer_name}: {description} {path} lies under the symlink "
        f"{link.path} -> {link.link_target}; "
        "a layer must not write through a symlink, so it is malformed or hostile; "
        "do not use this image"
    )


def opaque_not_directory_error(layer_name: str, path: str, entry: FileEntry) -> UnsafeLayerError:
    """Return the error for a layer with an opaque marker in ``path`` that it makes ``entry``."""
    return UnsafeLayerError(
        f"{layer_name}: {path} has an opaque-directory marker but the layer makes it a "
        f"{entry.type.value}; the layer is malformed"
    )


def root_not_directory_error(layer_name: str, entry: FileEntry) -> UnsafeLayerError:
    """Return the error for a layer whose entry for the image root is ``entry``, not a directory."""
    return UnsafeLayerError(
        f"{layer_name}: the tar entry for the image root is a {entry.type.value}, "
        "not a directory; the layer is malformed"
    )


class FileTree:
    """The final filesystem of an image: normalized absolute path -> :class:`FileEntry`.

    Build it with :meth:`from_image`, or apply layer tars one by one with :meth:`apply_layer`.
    The root ``/`` always exists. Iteration yields paths in sorted order.
    """

    def __init__(self) -> None:
        self._entries: dict[str, FileEntry] = {ROOT: _implicit_dir(ROOT, 0)}
        self._children: dict[str, set[str]] = {ROOT: set()}

    @classmethod
    def from_image(cls, image: Image) -> FileTree:
        """Read every layer of ``image`` in order and return the merged filesystem."""
        tree = cls()
        for index, layer in enumerate(image.layers):
            log.debug("applying layer %d (%s)", index, layer.label)
            with layer.read_tar() as stream:
                tree.apply_layer(stream, index, layer.label)
        return tree

    def apply_layer(self, layer_stream: BinaryIO, layer_index: int, layer_name: str) -> None:
        """Apply one uncompressed layer tar on top of the tree.

        Whiteouts and opaque markers delete only what lower layers wrote, wherever they appear
        in the tar. The entries of the layer then apply in tar order, so a later duplicate wins.
        Raises UnsafeLayerError for an entry or whiteout under a symlink, a path that escapes
        the root, or an invalid hardlink; ImageFormatError for a corrupt tar.
        """
        deleted: list[str] = []
        opaque: list[str] = []
        entries: list[FileEntry] = []
        for item in iter_layer(layer_stream, layer_index=layer_index, layer_name=layer_name):
            if isinstance(item, TarMember):
                if item.entry.is_regular:
                    item.read_content()
                entries.append(item.entry)
            elif item.opaque:
                opaque.append(item.path)
            else:
                deleted.append(item.path)

        for path in opaque:
            self._clear_opaque(path, layer_name)
        for path in deleted:
            self._delete(path, layer_name)
        for entry in entries:
            self._add(entry, layer_name)
        for path in opaque:
            # The marker means the directory exists in this layer, even without a tar entry.
            self._ensure_dir(path, layer_index, layer_name)

    # -- queries -----------------------------------------------------------------------------

    def get(self, path: str) -> FileEntry | None:
        """Return the entry at a normalized absolute path, or None; symlinks are not followed."""
        return self._entries.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> Iterator[FileEntry]:
        """Yield every entry, sorted by path."""
        for path in self:
            yield self._entries[path]

    def children(self, path: str) -> list[str]:
        """Return the sorted paths directly inside the directory ``path`` (empty if none)."""
        return sorted(self._children.get(path, ()))

    @staticmethod
    def parents(path: str) -> list[str]:
        """Return the ancestors of ``path``, root first, without ``path`` itself."""
        found: list[str] = []
        while path != ROOT:
            path = parent_of(path)
            found.append(path)
        return found[::-1]

    def resolve(self, path: str, follow_last: bool = True) -> Resolution:
        """Look up ``path`` component by component, following symlinks inside the image root.

        Absolute symlink targets start again at the image root, and ``..`` at the root stays
        there, so a lookup never leaves the image. The last component is followed only when
        ``follow_last`` is true. Returns the existing path reached and the symlinks crossed.
        """
        pending = deque(part for part in path.split("/") if part not in ("", "."))
        current = ROOT
        crossed: list[str] = []
        while pending:
            name = pending.popleft()
            if name == "..":
                current = parent_of(current)
                continue
            candidate = join(current, name)
            entry = self._entries.get(candidate)
            if entry is None:
                return Resolution(None, crossed)
            if entry.is_symlink and (pending or follow_last):
                if len(crossed) >= MAX_SYMLINKS:
                    return Resolution(None, crossed)
                crossed.append(candidate)
                target = entry.link_target
                if target.startswith("/"):
                    current = ROOT
                pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if pending and not entry.is_dir:
                return Resolution(None, crossed)
            current = candidate
        return Resolution(current, crossed)

    def content_source(self, path: str) -> ContentSource | None:
        """Return where the content of the file at ``path`` is in the layers.

        For a regular file that is the file itself, and for a hardlink the regular file its
        inode came from. Returns None for entries without content and for missing paths.
        """
        entry = self._entries.get(path)
        if entry is None:
            return None
        if entry.type is FileType.REGULAR:
            return ContentSource(entry.layer, entry.path, entry.digest)
        if entry.type is FileType.HARDLINK:
            return ContentSource(entry.link_layer, entry.link_target, entry.digest)
        return None

    def hardlink_groups(self) -> dict[str, list[str]]:
        """Map each hardlink target to the sorted paths that share its inode, target included.

        A target that a later layer deleted or replaced is still the key, with only the links
        left in the group. NOTE: a target path can have two groups, when a later layer gave
        the path new content and also linked to it. The group without the file now at that
        path is then keyed by its first path.
        """
        groups: dict[ContentSource, list[str]] = {}
        for path in sorted(self._entries):
            source = self.content_source(path)
            if source is not None and self._entries[path].type is FileType.HARDLINK:
                groups.setdefault(source, []).append(path)
        result: dict[str, list[str]] = {}
        orphans: list[list[str]] = []
        for source, links in groups.items():
            if self.content_source(source.path) == source:
                result[source.path] = sorted([source.path, *links])
            else:
                orphans.append(links)
        for links in orphans:
            target = self._entries[links[0]].link_target
            result[links[0] if target in result else target] = links
        return result

    @property
    def total_size(self) -> int:
        """Bytes of regular-file content in the tree, counting each hardlinked inode once."""
        sources = {self.content_source(path): entry.size for path, entry in self._entries.items()}
        sources.pop(None, None)
        return sum(sources.values())

    # -- building ----------------------------------------------------------------------------

    def _insert(self, entry: FileEntry) -> None:
        self._entries[entry.path] = entry
        self._children[parent_of(entry.path)].add(entry.path)
        if entry.is_dir:
            self._children.setdefault(entry.path, set())

    def _remove(self, path: str) -> None:
        """Remove ``path`` and everything under it."""
        self._remove_children(path)
        del self._entries[path]
        self._children.pop(path, None)
        self._children[parent_of(path)].discard(path)

    def _remove_children(self, path: str) -> None:
        stack = list(self._children.get(path, ()))
        while stack:
            child = stack.pop()
            stack.extend(self._children.pop(child, ()))
            del self._entries[child]
        if path in self._children:
            self._children[path].clear()

    def _check_parent(self, path: str, layer_name: str, description: str) -> None:
        """Reject ``path`` if an existing ancestor is a symlink or not a directory."""
        for ancestor in self.parents(path):
            entry = self._entries.get(ancestor)
            if entry is None or entry.is_dir:
                continue
            if entry.is_symlink:
                raise under_symlink_error(layer_name, description, path, entry)
            raise UnsafeLayerError(
                f"{layer_name}: {description} {path} is inside {ancestor}, which is a "
                f"{entry.type.value}, not a directory; the layer is malformed"
            )

    def _ensure_parents(self, path: str, layer: int, layer_name: str) -> None:
        self._check_parent(path, layer_name, "entry")
        for ancestor in self.parents(path):
            if ancestor not in self._entries:
                self._insert(_implicit_dir(ancestor, layer))

    def _ensure_dir(self, path: str, layer: int, layer_name: str) -> None:
        self._ensure_parents(path, layer, layer_name)
        entry = self._entries.get(path)
        if entry is None:
            self._insert(_implicit_dir(path, layer))
        elif not entry.is_dir:
            raise opaque_not_directory_error(layer_name, path, entry)

    def _clear_opaque(self, path: str, layer_name: str) -> None:
        self._check_parent(path, layer_name, "opaque directory")
        entry = self._entries.get(path)
        if entry is None:
            return
        if entry.is_symlink:
            raise under_symlink_error(layer_name, "opaque marker", join(path, OPAQUE_MARKER), entry)
        if entry.is_dir:
            self._remove_children(path)
        else:
            self._remove(path)

    def _delete(self, path: str, layer_name: str) -> None:
        self._check_parent(path, layer_name, "whiteout of")
        if path in self._entries:
            self._remove(path)
        else:
            log.debug("%s: whiteout of %s, which no lower layer has", layer_name, path)

    def _add(self, entry: FileEntry, layer_name: str) -> None:
        if entry.path == ROOT:
            self._set_root(entry, layer_name)
            return
        self._ensure_parents(entry.path, entry.layer, layer_name)
        if entry.type is FileType.HARDLINK:
            entry = self._link(entry, layer_name)
        old = self._entries.get(entry.path)
        if old is not None and old.is_dir and entry.is_dir:
            # A directory over a directory merges: the new metadata, the old children.
            self._entries[entry.path] = entry
            return
        if old is not None:
            self._remove(entry.path)
        self._insert(entry)

    def _set_root(self, entry: FileEntry, layer_name: str) -> None:
        if not entry.is_dir:
            raise root_not_directory_error(layer_name, entry)
        self._entries[ROOT] = entry

    def _link(self, entry: FileEntry, layer_name: str) -> FileEntry:
        """Turn a tar hardlink into an entry sharing the metadata and content of its target."""
        self._check_parent(entry.link_target, layer_name, f"hardlink {entry.path} to")
        target = self._entries.get(entry.link_target)
        problem = ""
        if target is None:
            problem = "does not exist in this or a lower layer"
        elif target.path == entry.path:
            problem = "is the link itself"
        elif target.is_dir:
            problem = "is a directory"
        if target is None or problem:
            raise UnsafeLayerError(
                f"{layer_name}: hardlink {entry.path} -> {entry.link_target} is invalid: the "
                f"target {problem}; the layer is malformed"
            )
        copy = dataclasses.replace(target, path=entry.path, layer=entry.layer)
        copy.xattrs = dict(target.xattrs)
        if target.type is FileType.REGULAR:
            copy.type = FileType.HARDLINK
            copy.link_target, copy.link_layer = target.path, target.layer
        # A link to a symlink, device or FIFO is another name for that node; keep its kind.
        return copy
