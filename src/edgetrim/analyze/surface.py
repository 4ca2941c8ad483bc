"""Find the attack surface of an image's final filesystem.

Shells and package managers are found by file name in a ``bin`` or ``sbin`` directory. The
setuid, setgid and world-writable bits come from the layer tar headers. ELF executables are
regular files with an execute bit whose content starts with an ELF header of type ``ET_EXEC``
or ``ET_DYN`` (position-independent executables are ``ET_DYN``), counted once per inode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable

from edgetrim.analyze.result import AttackSurface, SurfaceFile
from edgetrim.analyze.stack import LayerStack
from edgetrim.fs.entry import FileEntry, FileType

_SHELLS = frozenset(
    {"sh", "bash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish", "busybox"}
)
_PACKAGE_MANAGER = re.compile(
    r"^(apt|apt-get|aptitude|dpkg|apk|yum|dnf|microdnf|rpm|zypper|pacman|opkg"
    r"|pip|pip\d(\.\d+)?|pipx|easy_install|conda|mamba|npm|yarn|pnpm|gem)$"
)
_BIN_DIR = re.compile(r"/s?bin$")
_ELF_EXECUTABLE_TYPES = (2, 3)


def find_surface(stack: LayerStack, user: str, passwd: bytes | None) -> AttackSurface:
    """Collect the attack surface from the replayed final filesystem and the configured user."""

    def copy_key(path: str, entry: FileEntry) -> int | None:
        # A hardlinked inode is one executable: busybox images link hundreds of names to one.
        copy = stack.copy_of.get(path)
        if copy is None or stack.copies[copy].elf_type not in _ELF_EXECUTABLE_TYPES:
            return None
        return copy

    return collect_surface(stack.final_paths(), copy_key, user, passwd)


def collect_surface(
    entries: Iterable[tuple[str, FileEntry]],
    elf_copy: Callable[[str, FileEntry], Hashable | None],
    user: str,
    passwd: bytes | None,
) -> AttackSurface:
    """Collect the attack surface from (path, entry) pairs of a final filesystem.

    ``elf_copy`` returns a key that is the same for all paths of one stored copy (an inode)
    when the path is an ELF executable, and None otherwise. Every list in the result is
    sorted by path, and an inode with several paths is listed under its first path.
    """
    shells: list[str] = []
    managers: list[str] = []
    setuid: list[FileEntry] = []
    setgid: list[FileEntry] = []
    writable: list[FileEntry] = []
    elf: list[tuple[str, Hashable, FileEntry]] = []
    for path, entry in entries:
        kind = entry.type
        if kind is FileType.DIRECTORY:
            if entry.mode & 0o002 and not entry.mode & 0o1000:
                writable.append(entry)
            continue
        directory, _, name = path.rpartition("/")
        # The name test comes first because it rules out most paths more quickly.
        if (name in _SHELLS or _PACKAGE_MANAGER.match(name)) and _BIN_DIR.search(directory):
            (shells if name in _SHELLS else managers).append(path)
        if kind is not FileType.REGULAR and kind is not FileType.HARDLINK:
            continue
        mode = entry.mode
        if mode & 0o4000:
            setuid.append(entry)
        if mode & 0o2000:
            setgid.append(entry)
        if mode & 0o111:
            copy = elf_copy(path, entry)
            if copy is not None:
                elf.append((path, copy, entry))
    elf.sort(key=lambda item: item[0])
    elf_copies: set[Hashable] = set()
    elf_entries: list[FileEntry] = []
    for _, copy, entry in elf:
        if copy not in elf_copies:
            elf_copies.add(copy)
            elf_entries.append(entry)
    return AttackSurface(
        user=user,
        runs_as_root=runs_as_root(user, passwd),
        shells=sorted(shells),
        package_managers=sorted(managers),
        setuid=_surface_files(setuid),
        setgid=_surface_files(setgid),
        world_writable_dirs=_surface_files(writable),
        elf_executables=[_surface_file(entry) for entry in elf_entries],
    )


def runs_as_root(user: str, passwd: bytes | None) -> bool | None:
    """Tell whether the config's ``User`` (``name``, ``uid``, ``name:group``) is user ID 0.

    An empty ``User`` runs as root. A name is looked up in the image's ``/etc/passwd``;
    returns None when it is not there, because the runtime would then fail to start it.
    """
    name = user.split(":", 1)[0]
    if name in ("", "root"):
        return True
    if name.isdigit():
        return int(name) == 0
    for line in (passwd or b"").decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            return fields[2] == "0"
    return None


def _surface_files(entries: list[FileEntry]) -> list[SurfaceFile]:
    return [_surface_file(entry) for entry in sorted(entries, key=lambda entry: entry.path)]


def _surface_file(entry: FileEntry) -> SurfaceFile:
    return SurfaceFile(
        path=entry.path, mode=entry.mode_string, uid=entry.uid, gid=entry.gid, size=entry.size
    )
