"""Whether this machine can run an image's programs: natively, or through binfmt_misc.

An image for another architecture does not run under runc unless the kernel has a
binfmt_misc handler (such as one from qemu-user-static) for that architecture's ELF files.
Without one, every run fails with "exec format error", and a minimize would compare two
failed runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgetrim.errors import ContainerRunError
from edgetrim.image.model import Platform
from edgetrim.transports.oci_layout import host_platform

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")

# Architectures whose programs a host of the key architecture runs without emulation.
# Linux on amd64 runs 386 programs when built with CONFIG_IA32_EMULATION, as distribution
# kernels are. arm on arm64 is left out, because many arm64 CPUs have no 32-bit mode.
_NATIVE_EXTRA = {"amd64": frozenset({"386"})}


@dataclass(frozen=True)
class _ElfIdentity:
    """The ELF header fields that tell an architecture's programs apart."""

    elf_class: int  # 1: 32-bit, 2: 64-bit
    data: int  # 1: little endian, 2: big endian
    machine: int  # e_machine


# Go architecture names, as image platforms use them, and their ELF identity.
_ELF_IDENTITIES = {
    "386": _ElfIdentity(1, 1, 3),
    "amd64": _ElfIdentity(2, 1, 62),
    "arm": _ElfIdentity(1, 1, 40),
    "arm64": _ElfIdentity(2, 1, 183),
    "loong64": _ElfIdentity(2, 1, 258),
    "mips": _ElfIdentity(1, 2, 8),
    "mipsle": _ElfIdentity(1, 1, 8),
    "mips64": _ElfIdentity(2, 2, 8),
    "mips64le": _ElfIdentity(2, 1, 8),
    "ppc64": _ElfIdentity(2, 2, 21),
    "ppc64le": _ElfIdentity(2, 1, 21),
    "riscv64": _ElfIdentity(2, 1, 243),
    "s390x": _ElfIdentity(2, 2, 22),
}

_ET_EXEC, _ET_DYN = 2, 3


@dataclass(frozen=True)
class BinfmtHandler:
    """One magic-based entry of binfmt_misc."""

    name: str
    enabled: bool
    fix_binary: bool  # the F flag: the kernel opened the interpreter when it was registered
    offset: int
    magic: bytes
    mask: bytes

    def matches(self, header: bytes) -> bool:
        """Tell whether a file that starts with ``header`` goes to this handler."""
        part = header[self.offset : self.offset + len(self.magic)]
        if len(part) < len(self.magic):
            return False
        return all(
            byte & mask == magic & mask
            for byte, magic, mask in zip(part, self.magic, self.mask, strict=True)
        )


def read_binfmt_handlers(folder: Path = BINFMT_MISC) -> list[BinfmtHandler]:
    """Read the magic-based handlers registered in binfmt_misc; empty when it is not mounted.

    Handlers that match on a file name extension are skipped, because image programs are
    found by their ELF header.
    """
    try:
        if (folder / "status").read_text().strip() != "enabled":
            return []
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return []
    handlers = []
    for name in names:
        if name in ("register", "status"):
            continue
        with contextlib.suppress(OSError, ValueError):
            handler = _parse_handler(name, (folder / name).read_text())
            if handler is not None:
                handlers.append(handler)
    return handlers


def _parse_handler(name: str, text: str) -> BinfmtHandler | None:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    if "magic" not in fields:
        return None
    magic = bytes.fromhex(fields["magic"])
    mask = bytes.fromhex(fields["mask"]) if "mask" in fields else b"\xff" * len(magic)
    return BinfmtHandler(
        name=name,
        enabled="enabled" in fields,
        fix_binary="F" in fields.get("flags", ""),
        offset=int(fields.get("offset", "0")),
        magic=magic,
        mask=mask,
    )


def elf_headers(architecture: str) -> list[bytes]:
    """Return the first 20 bytes of an executable and of a PIE for ``architecture``.

    Empty for an architecture this module does not know.
    """
    identity = _ELF_IDENTITIES.get(architecture)
    if identity is None:
        return []
    byte_order: Literal["little", "big"] = "little" if identity.data == 1 else "big"
    ident = b"\x7fELF" + bytes([identity.elf_class, identity.data, 1]) + bytes(9)
    return [
        ident + elf_type.to_bytes(2, byte_order) + identity.machine.to_bytes(2, byte_order)
        for elf_type in (_ET_EXEC, _ET_DYN)
    ]


def check_runnable(platform: Platform, *, source: str, binfmt: Path = BINFMT_MISC) -> None:
    """Raise ContainerRunError when this machine cannot run programs built for ``platform``.

    The host runs its own architecture (and 386 on amd64). Another architecture runs through
    an enabled binfmt_misc handler with the F flag, because without that flag the kernel
    looks for the interpreter inside the container, where it is missing.
    """
    host = host_platform()
    if platform.os == host.os and (
        platform.architecture == host.architecture
        or platform.architecture in _NATIVE_EXTRA.get(host.architecture, ())
    ):
        return
    problem = f"{source}: the image is for {platform}, but this machine is {host}"
    if platform.os != host.os:
        raise ContainerRunError(
            f"{problem}, so it cannot run here; minimize it on a {platform} machine"
        )
    headers = elf_headers(platform.architecture)
    handlers = [
        handler
        for handler in read_binfmt_handlers(binfmt)
        if handler.enabled and any(handler.matches(header) for header in headers)
    ]
    if any(handler.fix_binary for handler in handlers):
        return
    if handlers:
        raise ContainerRunError(
            f"{problem}, and its binfmt_misc handler {handlers[0].name!r} lacks the F flag, "
            "so containers cannot reach the handler's interpreter; register it with the F flag "
            f"(as qemu-user-static does) or minimize the image on a {platform} machine"
        )
    raise ContainerRunError(
        f"{problem} and has no binfmt_misc handler for {platform.architecture} programs "
        f"(see {binfmt}); register one, such as qemu-user-static's, or minimize the image on "
        f"a {platform} machine"
    )
