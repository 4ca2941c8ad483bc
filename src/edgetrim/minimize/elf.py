"""Static ELF dependencies: the program interpreter and the DT_NEEDED libraries of a binary.

Libraries are searched the way glibc's ld.so does, inside the image: DT_RPATH (when there is
no DT_RUNPATH), LD_LIBRARY_PATH from the image's env, DT_RUNPATH, the directories of
/etc/ld.so.conf, then the default directories. ``$ORIGIN`` is the binary's own directory.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from edgetrim.fs.beneath import RootfsReader, open_beneath

log = logging.getLogger(__name__)

ELF_MAGIC = b"\x7fELF"
MULTIARCH = {
    "EM_X86_64": "x86_64-linux-gnu",
    "EM_AARCH64": "aarch64-linux-gnu",
    "EM_ARM": "arm-linux-gnueabihf",
    "EM_386": "i386-linux-gnu",
}


@dataclass
class ElfInfo:
    """The dynamic-linking facts of one ELF file."""

    machine: str
    elf_class: int
    interpreter: str = ""
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)


def read_elf(stream: BinaryIO) -> ElfInfo | None:
    """Read an ELF file's interpreter and dynamic section; None if it is not a valid ELF file."""
    try:
        stream.seek(0)
        if stream.read(4) != ELF_MAGIC:
            return None
        stream.seek(0)
        elf = ELFFile(stream)
        info = ElfInfo(machine=elf["e_machine"], elf_class=elf.elfclass)
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_INTERP":
                info.interpreter = segment.get_interp_name()  # type: ignore[attr-defined]
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                _read_dynamic(section, info)
        return info
    except (ELFError, OSError, ValueError, KeyError) as exc:
        log.debug("not a readable ELF file (%s)", exc)
        return None


def _read_dynamic(section: DynamicSection, info: ElfInfo) -> None:
    for tag in section.iter_tags():
        # pyelftools sets these attributes only on tags of the matching type.
        if tag.entry.d_tag == "DT_NEEDED":
            info.needed.append(getattr(tag, "needed"))  # noqa: B009
        elif tag.entry.d_tag == "DT_RPATH":
            info.rpath.extend(getattr(tag, "rpath").split(":"))  # noqa: B009
        elif tag.entry.d_tag == "DT_RUNPATH":
            info.runpath.extend(getattr(tag, "runpath").split(":"))  # noqa: B009


def read_elf_in(rootfs: Path, path: str) -> ElfInfo | None:
    """Read the ELF file at image path ``path`` of an unpacked rootfs; None if it is not one."""
    try:
        with open_beneath(rootfs, path) as stream:
            return read_elf(stream)
    except OSError:
        return None


class LibraryResolver:
    """Find DT_NEEDED libraries in an image the way its dynamic loader would."""

    def __init__(self, files: RootfsReader, env: list[str]):
        self._tree = files.tree
        self._rootfs = files.root
        library_path = next((e[16:] for e in env if e.startswith("LD_LIBRARY_PATH=")), "")
        self._env_dirs = [d for d in library_path.split(":") if d]
        self._conf_dirs = _ld_so_conf_dirs(files, "/etc/ld.so.conf", depth=0)
        self._compatible: dict[str, bool] = {}

    def default_dirs(self, info: ElfInfo) -> list[str]:
        triplet = MULTIARCH.get(info.machine, "")
        dirs = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
        suffix = "64" if info.elf_class == 64 else ""
        return dirs + [f"/lib{suffix}", f"/usr/lib{suffix}", "/lib", "/usr/lib"]

    def find(self, name: str, binary: str, info: ElfInfo) -> str | None:
        """Return the resolved path of library ``name`` needed by ``binary``, or None."""
        if "/" in name:
            return self._existing(
                posixpath.normpath(posixpath.join(posixpath.dirname(binary), name)), info
            )
        origin = posixpath.dirname(binary)
        search = (info.rpath if not info.runpath else []) + self._env_dirs + info.runpath
        search = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in search]
        for directory in [*search, *self._conf_dirs, *self.default_dirs(info)]:
            found = self._existing(posixpath.join(directory, name), info)
            if found:
                return found
        return None

    def symlinks_to(self, path: str) -> list[str]:
        return self._tree.resolve(path).symlinks

    def _existing(self, path: str, info: ElfInfo) -> str | None:
        resolved = self._tree.resolve(path).path
        entry = self._tree.get(resolved) if resolved else None
        if resolved is None or entry is None or entry.is_dir:
            return None
        # A library of another architecture (a /lib32 copy, say) is skipped, as ld.so does.
        if resolved not in self._compatible:
            other = read_elf_in(self._rootfs, resolved)
            self._compatible[resolved] = bool(
                other and other.machine == info.machine and other.elf_class == info.elf_class
            )
        return path if self._compatible[resolved] else None


def _ld_so_conf_dirs(files: RootfsReader, conf: str, *, depth: int) -> list[str]:
    """Read the library directories of an ld.so.conf in the image, following its includes."""
    if depth > 8:
        return []
    text = files.read_text(conf)
    tree = files.tree
    dirs: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include "):
            pattern = line.split(None, 1)[1]
            if not pattern.startswith("/"):
                pattern = posixpath.join(posixpath.dirname(conf), pattern)
            directory = tree.resolve(posixpath.dirname(pattern)).path
            if directory is None:
                continue
            for child in tree.children(directory):
                if fnmatch.fnmatch(posixpath.basename(child), posixpath.basename(pattern)):
                    dirs += _ld_so_conf_dirs(files, child, depth=depth + 1)
        else:
            dirs.append(line)
    return dirs
