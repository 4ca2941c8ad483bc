"""The result objects of an analysis and their JSON form (schema ``analyze-v1.json``).

Every byte of regular-file content that an image's layers store belongs to exactly one
:class:`Category`, so the categories add up to ``stored_bytes`` and never more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
SCHEMA_ID = "edgetrim-analyze/v1"


class Category(enum.Enum):
    """The category of one stored copy of file content.

    OVERWRITTEN and DELETED copies are hidden by a later layer. DUPLICATE copies are visible
    but have the same content as another visible file. LIKELY_UNUSED copies are visible and
    unique, and match a heuristic of :mod:`edgetrim.analyze.unused`. IN_USE is the rest.
    """

    IN_USE = "in_use"
    OVERWRITTEN = "overwritten"
    DELETED = "deleted"
    DUPLICATE = "duplicate"
    LIKELY_UNUSED = "likely_unused"


@dataclass(slots=True)
class CopyReport:
    """One stored copy of file content: a regular-file member of one layer tar.

    ``paths`` are the final paths that refer to it (several for a hardlinked inode, none for a
    hidden copy). ``kind`` is the likely-unused kind, ``hidden_in`` the index of the layer
    that hid the copy (-1 if visible) and ``package`` the dpkg package that owns it.
    """

    path: str
    layer: int
    size: int
    digest: str
    category: Category
    paths: list[str] = field(default_factory=list)
    kind: str = ""
    hidden_in: int = -1
    package: str = ""
    elf_type: int = 0


@dataclass(slots=True)
class FinalFile:
    """A path of the final filesystem with content, for comparing images of a device set."""

    path: str
    size: int
    digest: str
    mode: int
    uid: int
    gid: int
    copy: int


@dataclass
class LayerReport:
    """One layer: its blob, its history entry, its sizes and where its content bytes went.

    ``blob_bytes`` is the size of the blob as the image stores it (what a pull transfers),
    and ``compressed`` tells whether that blob is compressed: ``docker save`` stores layers
    as plain tars. ``uncompressed_bytes`` is the size of the layer tar and ``content_bytes``
    the regular-file content in it. ``bytes_by_category`` splits ``content_bytes`` by
    :class:`Category`.
    """

    index: int
    digest: str
    diff_id: str
    chain_id: str
    blob_bytes: int
    compressed: bool
    uncompressed_bytes: int
    content_bytes: int
    entries: int
    files: int
    directories: int
    whiteouts: int
    created_by: str
    comment: str
    bytes_by_category: dict[str, int]


@dataclass
class WasteSummary:
    """Bytes of content by category, the derived totals and the efficiency score.

    ``wasted_bytes`` is overwritten + deleted + duplicate: bytes that can be dropped without
    changing the final filesystem's content. ``efficiency`` is
    ``(stored_bytes - wasted_bytes) / stored_bytes``, and 1.0 when the image stores no bytes.
    """

    stored_bytes: int
    in_use_bytes: int
    overwritten_bytes: int
    deleted_bytes: int
    duplicate_bytes: int
    likely_unused_bytes: int
    likely_unused_by_kind: dict[str, int]

    @property
    def wasted_bytes(self) -> int:
        return self.overwritten_bytes + self.deleted_bytes + self.duplicate_bytes

    @property
    def final_bytes(self) -> int:
        """Content bytes of the final filesystem, each hardlinked inode counted once."""
        return self.stored_bytes - self.overwritten_bytes - self.deleted_bytes

    @property
    def efficiency(self) -> float:
        if self.stored_bytes == 0:
            return 1.0
        return (self.stored_bytes - self.wasted_bytes) / self.stored_bytes


@dataclass
class DuplicateGroup:
    """Visible files with identical content; all copies but ``kept`` count as duplicates."""

    digest: str
    size: int
    kept: str
    duplicates: list[str]

    @property
    def wasted_bytes(self) -> int:
        return self.size * len(self.duplicates)


@dataclass
class PackageReport:
    """An installed package, with the bytes of its files in the final filesystem."""

    name: str
    version: str
    architecture: str
    installed_size_kib: int
    files: int
    bytes: int
    toolchain: bool


@dataclass
class PackageSummary:
    """The package database found in the image, if any, and its packages by size."""

    database: str | None
    packages: list[PackageReport] = field(default_factory=list)

    @property
    def toolchain(self) -> list[PackageReport]:
        return [package for package in self.packages if package.toolchain]


@dataclass
class SurfaceFile:
    """A file named in the attack surface, with its mode as ``ls -l`` prints it."""

    path: str
    mode: str
    uid: int
    gid: int
    size: int = 0


@dataclass
class AttackSurface:
    """The tools and weak permissions that an attacker inside a container of the image finds.

    ``runs_as_root`` is None when the configured user is a name that ``/etc/passwd`` does not
    list, so its user ID is unknown.
    """

    user: str
    runs_as_root: bool | None
    shells: list[str]
    package_managers: list[str]
    setuid: list[SurfaceFile]
    setgid: list[SurfaceFile]
    world_writable_dirs: list[SurfaceFile]
    elf_executables: list[SurfaceFile]

    @property
    def elf_executable_bytes(self) -> int:
        return sum(item.size for item in self.elf_executables)


@dataclass
class ImageAnalysis:
    """The analysis of one image. :func:`image_to_json` turns it into the documented JSON form.

    ``copies`` lists every stored copy and ``final_files`` every visible path with content.
    The HTML report and device sets use both, and the JSON leaves them out because of size.
    """

    source: str
    names: list[str]
    config_digest: str
    platform: str
    blob_bytes: int
    uncompressed_bytes: int
    final_entries: int
    waste: WasteSummary
    layers: list[LayerReport]
    duplicates: list[DuplicateGroup]
    packages: PackageSummary
    surface: AttackSurface
    copies: list[CopyReport]
    final_files: list[FinalFile]
    notes: list[str] = field(default_factory=list)

    def copies_in(self, category: Category) -> list[CopyReport]:
        """Return the copies of one category, largest first."""
        found = [copy for copy in self.copies if copy.category is category]
        found.sort(key=lambda copy: (-copy.size, copy.path))
        return found


def image_to_json(analysis: ImageAnalysis, *, top: int) -> dict[str, Any]:
    """Return the JSON object of one image; lists of files are cut to the ``top`` largest."""
    waste = analysis.waste
    return {
        "source": analysis.source,
        "names": analysis.names,
        "config_digest": analysis.config_digest,
        "platform": analysis.platform,
        "sizes": {
            "blob_bytes": analysis.blob_bytes,
            # The first name of blob_bytes, for readers of version 1. Not always compressed.
            "compressed_bytes": analysis.blob_bytes,
            "uncompressed_bytes": analysis.uncompressed_bytes,
            "stored_bytes": waste.stored_bytes,
            "final_bytes": waste.final_bytes,
            "final_entries": analysis.final_entries,
        },
        "waste": {
            "efficiency": waste.efficiency,
            "wasted_bytes": waste.wasted_bytes,
            "in_use_bytes": waste.in_use_bytes,
            "overwritten_bytes": waste.overwritten_bytes,
            "deleted_bytes": waste.deleted_bytes,
            "duplicate_bytes": waste.duplicate_bytes,
            "likely_unused_bytes": waste.likely_unused_bytes,
            "likely_unused_by_kind": waste.likely_unused_by_kind,
        },
        "layers": [_layer_json(layer) for layer in analysis.layers],
        "hidden_files": [
            _copy_json(copy)
            for copy in sorted(
                analysis.copies_in(Category.OVERWRITTEN) + analysis.copies_in(Category.DELETED),
                key=lambda copy: (-copy.size, copy.path),
            )[:top]
        ],
        "duplicates": [_duplicate_json(group) for group in analysis.duplicates[:top]],
        "likely_unused_files": [
            _copy_json(copy) for copy in analysis.copies_in(Category.LIKELY_UNUSED)[:top]
        ],
        "packages": _packages_json(analysis.packages, top),
        "attack_surface": _surface_json(analysis.surface),
        "notes": analysis.notes,
    }


def _layer_json(layer: LayerReport) -> dict[str, Any]:
    return {
        "index": layer.index,
        "digest": layer.digest,
        "diff_id": layer.diff_id,
        "chain_id": layer.chain_id,
        "blob_bytes": layer.blob_bytes,
        "compressed": layer.compressed,
        "compressed_bytes": layer.blob_bytes,
        "uncompressed_bytes": layer.uncompressed_bytes,
        "content_bytes": layer.content_bytes,
        "entries": layer.entries,
        "files": layer.files,
        "directories": layer.directories,
        "whiteouts": layer.whiteouts,
        "created_by": layer.created_by,
        "comment": layer.comment,
        "bytes_by_category": layer.bytes_by_category,
    }


def _copy_json(copy: CopyReport) -> dict[str, Any]:
    return {
        "path": copy.path,
        "layer": copy.layer,
        "size": copy.size,
        "sha256": copy.digest,
        "category": copy.category.value,
        "kind": copy.kind or None,
        "hidden_in_layer": copy.hidden_in if copy.hidden_in >= 0 else None,
        "package": copy.package or None,
    }


def _duplicate_json(group: DuplicateGroup) -> dict[str, Any]:
    return {
        "sha256": group.digest,
        "size": group.size,
        "kept": group.kept,
        "duplicates": group.duplicates,
        "wasted_bytes": group.wasted_bytes,
    }


def _package_json(package: PackageReport) -> dict[str, Any]:
    return {
        "name": package.name,
        "version": package.version,
        "architecture": package.architecture,
        "installed_size_kib": package.installed_size_kib,
        "files": package.files,
        "bytes": package.bytes,
        "toolchain": package.toolchain,
    }


def _packages_json(summary: PackageSummary, top: int) -> dict[str, Any]:
    return {
        "database": summary.database,
        "count": len(summary.packages),
        "bytes": sum(package.bytes for package in summary.packages),
        "toolchain_bytes": sum(package.bytes for package in summary.toolchain),
        "largest": [_package_json(package) for package in summary.packages[:top]],
        "toolchain": [_package_json(package) for package in summary.toolchain],
    }


def _surface_file_json(item: SurfaceFile) -> dict[str, Any]:
    return {
        "path": item.path,
        "mode": item.mode,
        "uid": item.uid,
        "gid": item.gid,
        "size": item.size,
    }


def _surface_json(surface: AttackSurface) -> dict[str, Any]:
    return {
        "user": surface.user,
        "runs_as_root": surface.runs_as_root,
        "shells": surface.shells,
        "package_managers": surface.package_managers,
        "setuid": [_surface_file_json(item) for item in surface.setuid],
        "setgid": [_surface_file_json(item) for item in surface.setgid],
        "world_writable_dirs": [_surface_file_json(item) for item in surface.world_writable_dirs],
        "elf_executables": {
            "count": len(surface.elf_executables),
            "bytes": surface.elf_executable_bytes,
        },
    }
