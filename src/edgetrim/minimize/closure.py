"""Decide which paths of an image to keep: what the traced run touched, and what that needs.

Every kept path records why it is kept, so a surprising path in the output can be explained.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgetrim.fs.beneath import RootfsReader, open_beneath
from edgetrim.fs.entry import FileType
from edgetrim.minimize.elf import ELF_MAGIC, LibraryResolver, read_elf

log = logging.getLogger(__name__)

# Directories a container expects even when the traced run never looked at them: the runtime
# mounts over /proc, /sys and /dev, and programs create files in the temporary directories.
ALWAYS_DIRECTORIES = ("/tmp", "/var/tmp", "/run", "/proc", "/sys", "/dev", "/etc")
# Docker resolves the config's user and groups from these files before the process starts.
ALWAYS_FILES = ("/etc/passwd", "/etc/group")
SHEBANG_LIMIT = 256


@dataclass
class KeepSet:
    """Paths to keep, each with the first reason found for it."""

    reasons: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, reason: str) -> bool:
        """Record ``path`` with ``reason``; return False if it was already kept."""
        if path in self.reasons:
            return False
        self.reasons[path] = reason
        return True

    def __contains__(self, path: object) -> bool:
        return path in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def paths(self) -> set[str]:
        return set(self.reasons)


class ClosureBuilder:
    """Grow a keep-set until every kept path can be reached and every kept binary can load.

    Every file it reads (ELF headers, shebangs, ld.so.conf, the package database) comes
    through ``files`` from the rootfs as it was unpacked from the image, before any run, so a
    run cannot change what is kept or what the rewritten package database lists.
    """

    def __init__(self, files: RootfsReader, env: list[str]):
        self.files = files
        self.tree = files.tree
        self.keep = KeepSet()
        self._libraries = LibraryResolver(files, env)
        self._pending: list[str] = []
        # Paths that do not resolve in the image. A run that creates a tree thousands of levels
        # deep reports every level, and without this set each would look its parents up again.
        self._missing: set[str] = set()

    def add_path(self, path: str, reason: str) -> None:
        """Keep ``path`` as the run saw it: its symlinks, its target and the directories above.

        A path that does not exist in the image (a file the run created or only looked for)
        keeps its deepest existing directory, so that the program can create it again.
        """
        if path in self.tree:
            # The path itself gets the caller's reason, even when it is a symlink.
            self._keep_entry(path, reason)
        resolution = self.tree.resolve(path)
        for link in resolution.symlinks:
            self._keep_entry(link, f"symlink on the way to {path}")
        if resolution.path is not None:
            self._keep_entry(resolution.path, reason)
            return
        self._missing.add(path)
        parent = posixpath.dirname(path)
        while parent != "/":
            if parent in self._missing:
                parent = posixpath.dirname(parent)
                continue
            found = self.tree.resolve(parent)
            if found.path is None:
                self._missing.add(parent)
            else:
                for link in found.symlinks:
                    self._keep_entry(link, f"symlink on the way to {parent}")
                entry = self.tree.get(found.path)
                if entry is not None and entry.is_dir:
                    self._keep_entry(found.path, f"directory that the run looked for {path} in")
                return
            parent = posixpath.dirname(parent)

    def add_paths(self, paths: Iterable[str], reason: str) -> None:
        for path in sorted(paths):
            self.add_path(path, reason)

    def add_listings(self, listed: Iterable[str], touched: set[str]) -> None:
        """Keep the entries of directories whose listing was the point of reading them.

        A directory that the run listed keeps all its entries (not their subdirectories'
        contents) when the run then opened, looked up or executed none of them. In that case
        the names themselves were the output, as in ``ls``, a glob or an index page. A
        directory whose listing only served a lookup (Python's import system lists every
        package directory) keeps just the entries the run went on to use.
        """
        for directory in sorted(listed):
            resolved = self.tree.resolve(directory).path
            if resolved is None:
                continue
            prefix = directory.rstrip("/") + "/"
            if any(path.startswith(prefix) for path in touched):
                continue
            for child in self.tree.children(resolved):
                self.add_path(child, f"entry of {directory}, whose listing the run read")

    def add_defaults(self) -> None:
        """Keep the directories and account files every container needs."""
        for path in ALWAYS_DIRECTORIES:
            entry = self.tree.get(path)
            if entry is not None and entry.is_dir:
                self._keep_entry(path, "directory every container expects")
        for path in ALWAYS_FILES:
            if path in self.tree:
                self.add_path(path, "user and group lookup by the container engine")

    def close(self) -> KeepSet:
        """Add the ELF interpreters, libraries and shebang interpreters of everything kept."""
        while self._pending:
            path = self._pending.pop()
            self._add_dependencies(path)
        return self.keep

    def read_text(self, path: str, *, limit: int = 1 << 20) -> str:
        """Return the text of a regular file of the image, or "" if it is missing or not a file.

        The path is resolved inside the image first, so a symlink never leads outside the rootfs.
        """
        return self.files.read_text(path, limit=limit)

    def _keep_entry(self, path: str, reason: str) -> None:
        entry = self.tree.get(path)
        if entry is None or not self.keep.add(path, reason):
            return
        for parent in self.tree.parents(path):
            self.keep.add(parent, f"parent directory of {path}")
        if entry.is_regular or entry.type is FileType.HARDLINK:
            self._pending.append(path)
        if entry.type is FileType.HARDLINK and entry.link_target:
            self._keep_entry(entry.link_target, f"hardlink target of {path}")

    def _add_dependencies(self, path: str) -> None:
        try:
            with open_beneath(self.files.root, path) as stream:
                head = stream.read(SHEBANG_LIMIT)
                if head.startswith(b"#!"):
                    self._add_shebang(path, head)
                    return
                info = read_elf(stream) if head.startswith(ELF_MAGIC) else None
        except OSError:
            return
        if info is None:
            return
        if info.interpreter:
            self.add_path(info.interpreter, f"ELF interpreter of {path}")
        for name in info.needed:
            found = self._libraries.find(name, path, info)
            if found is None:
                log.warning("%s needs %s, which is not in the image", path, name)
                continue
            self.add_path(found, f"DT_NEEDED {name} of {path}")

    def _add_shebang(self, path: str, head: bytes) -> None:
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            return
        interpreter = line.split()[0].decode("utf-8", "surrogateescape")
        self.add_path(interpreter, f"shebang interpreter of {path}")
        if posixpath.basename(interpreter) == "env" and len(line.split()) > 1:
            program = line.split()[1].decode("utf-8", "surrogateescape")
            for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
                if self.tree.resolve(posixpath.join(directory, program)).path:
                    self.add_path(
                        posixpath.join(directory, program), f"program run by the shebang of {path}"
                    )
                    break
