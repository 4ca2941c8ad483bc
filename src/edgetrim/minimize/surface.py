"""The attack surface of an image before and after minimization, from its file tree."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from edgetrim.analyze.result import AttackSurface
from edgetrim.analyze.surface import collect_surface
from edgetrim.fs.beneath import open_beneath
from edgetrim.fs.entry import FileEntry
from edgetrim.fs.tree import FileTree
from edgetrim.minimize.elf import ELF_MAGIC

_ELF_EXECUTABLE_TYPES = (2, 3)  # ET_EXEC and ET_DYN (position-independent executables)


def tree_surface(tree: FileTree, rootfs: Path, user: str, passwd: bytes | None) -> AttackSurface:
    """Collect the attack surface of ``tree``, reading ELF headers from an unpacked ``rootfs``.

    ``rootfs`` may hold more files than ``tree`` (the original's rootfs serves for the
    minimized tree too), because only the paths of ``tree`` are read.
    """

    def elf_copy(path: str, entry: FileEntry) -> Hashable | None:
        try:
            with open_beneath(rootfs, path) as stream:
                head = stream.read(18)
        except OSError:
            return None
        if len(head) < 18 or not head.startswith(ELF_MAGIC):
            return None
        # e_type follows the byte order that EI_DATA (byte 5) names: 1 little, 2 big endian.
        elf_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
        if elf_type not in _ELF_EXECUTABLE_TYPES:
            return None
        return tree.content_source(path) or path

    return collect_surface(((e.path, e) for e in tree.entries()), elf_copy, user, passwd)


def surface_rows(before: AttackSurface, after: AttackSurface) -> list[tuple[str, str, str]]:
    """Return (item, before, after) rows for a report."""

    def root(surface: AttackSurface) -> str:
        return {True: "yes", False: "no", None: "unknown"}[surface.runs_as_root]

    return [
        ("shells", str(len(before.shells)), str(len(after.shells))),
        ("package managers", str(len(before.package_managers)), str(len(after.package_managers))),
        ("setuid files", str(len(before.setuid)), str(len(after.setuid))),
        ("setgid files", str(len(before.setgid)), str(len(after.setgid))),
        ("world-writable dirs", str(len(before.world_writable_dirs)),
         str(len(after.world_writable_dirs))),
        ("ELF executables", str(len(before.elf_executables)), str(len(after.elf_executables))),
        ("runs as root", root(before), root(after)),
    ]  # fmt: skip
