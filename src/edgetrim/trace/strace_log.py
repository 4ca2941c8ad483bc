"""Turn an ``strace -f -y`` log of ``runc run`` into the container paths the process touched.

strace follows runc itself, which works on host paths until the container's init process calls
``pivot_root`` (or, for ``runc exec``, joins the container's mount namespace with ``setns``).
Only that process after that call, and every process it starts, counts. With
``-y`` strace prints the path of each file descriptor, including ``AT_FDCWD`` (the working
directory) and returned descriptors, so relative names and symlinked paths resolve exactly.

A descriptor whose file was unlinked is printed by strace 6.1 as ``3</srv/data>(deleted)``,
with the marker after the bracket and the path it had inside. A file whose name ends in
`` (deleted)`` is printed as ``3</srv/report (deleted)>``, so such a name is a path like any
other. Only a deleted working directory shows inside the brackets, as
``AT_FDCWD</srv/gone (deleted)>``; it is taken as it is printed, because names looked up in
a deleted directory exist neither there nor in the image.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_UNFINISHED = " <unfinished ...>"
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>\s?(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*)$", re.DOTALL)
_STRING = r'"((?:[^"\\]|\\.)*)"'
_FD_PATH = r"<((?:[^>\\]|\\.)*)>"
_DELETED = r"(?:\(deleted\))?"
# A dirfd with its path followed by a name relative to it, or a plain quoted name.
_OPERAND = re.compile(rf"(?:\b(?:\d+|AT_FDCWD){_FD_PATH}{_DELETED},\s*{_STRING})|{_STRING}")
_RETURNED_FD = re.compile(rf"^\d+{_FD_PATH}")
_FD_ARG = re.compile(rf"^\d+{_FD_PATH}")
_TRANSLATED_PID = re.compile(r"^\d+ /\* (\d+) in strace's PID NS \*/")
# Reading a directory's entries: the names are output the program may print or act on.
_LISTING_CALLS = frozenset({"getdents", "getdents64"})
_CLONE_CALLS = frozenset({"clone", "clone3", "fork", "vfork"})
_SKIPPED_CALLS = frozenset({"mount", "umount2", "pivot_root", "chroot", "execveat", "setns"})
# The indexes of the quoted operands of a call that are paths (default: only the first).
# Later strings are values, such as a symlink's target text or the buffer readlink fills.
_PATH_OPERANDS: dict[str, tuple[int, ...]] = {
    "symlink": (1,),
    "symlinkat": (1,),
    "rename": (0, 1),
    "renameat": (0, 1),
    "renameat2": (0, 1),
    "link": (0, 1),
    "linkat": (0, 1),
}
_IGNORED_TREES = ("/proc", "/sys", "/dev")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "\\": "\\", '"': '"'}


def unescape(text: str) -> str:
    """Decode strace's C-style escapes (``\\n``, ``\\ooo``, ``\\xHH``) in a printed string.

    Bytes that are not UTF-8 come back as surrogate escapes, as ``os.fsdecode`` would give them.
    """
    if "\\" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out += char.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif nxt.isdigit():
            digits = re.match(r"[0-7]{1,3}", text[i + 1 :])
            assert digits is not None
            out.append(int(digits.group(0), 8) & 0xFF)
            i += 1 + len(digits.group(0))
        else:
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
    return out.decode("utf-8", "surrogateescape")


@dataclass
class _Process:
    parent: int | None = None
    pivot_line: int | None = None
    cwd: str = "/"


@dataclass
class TraceSummary:
    """The file activity of the container's processes: every absolute path they named or opened."""

    paths: set[str] = field(default_factory=set)
    executed: list[str] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)
    processes: int = 0


def _joined_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Yield (pid, text) for each syscall, with ``unfinished``/``resumed`` halves joined."""
    pending: dict[int, str] = {}
    for raw in lines:
        match = _LINE.match(raw.rstrip("\n"))
        if not match:
            continue
        pid, rest = int(match.group(1)), match.group(2)
        if rest.startswith(("---", "+++")):
            continue
        if rest.endswith(_UNFINISHED):
            pending[pid] = rest[: -len(_UNFINISHED)]
            continue
        resumed = _RESUMED.match(rest)
        if resumed:
            rest = pending.pop(pid, resumed.group(1) + "(") + resumed.group(2)
        yield pid, rest


def _resolve(base: str, name: str) -> str:
    return posixpath.normpath(posixpath.join(base, name)) if name else posixpath.normpath(base)


def _operand_paths(call: str, args: str, cwd: str) -> list[str]:
    operands: list[str] = []
    for match in _OPERAND.finditer(args):
        if match.group(1) is not None:
            operands.append(_resolve(unescape(match.group(1)), unescape(match.group(2))))
        else:
            operands.append(_resolve(cwd, unescape(match.group(3))))
    wanted = _PATH_OPERANDS.get(call, (0,))
    return [operands[i] for i in wanted if i < len(operands)]


def parse(lines: Iterable[str], *, host_prefixes: tuple[str, ...] = ()) -> TraceSummary:
    """Collect the container paths from an strace log.

    ``host_prefixes`` are host directories (the bundle, runc's state) whose paths can show up
    in descriptors that runc opened before the pivot; they are dropped.
    """
    records = list(_joined_lines(lines))
    processes: dict[int, _Process] = {}
    for number, (pid, text) in enumerate(records):
        process = processes.setdefault(pid, _Process())
        call = _CALL.match(text)
        if not call:
            continue
        name, result = call.group(1), call.group(3)
        if _enters_container(name, call.group(2), result) and process.pivot_line is None:
            process.pivot_line = number
        elif name in _CLONE_CALLS and _child_pid(result) is not None:
            processes.setdefault(_child_pid(result), _Process()).parent = pid  # type: ignore[arg-type]

    def inside(pid: int, number: int) -> bool:
        seen = set()
        current: int | None = pid
        while current is not None and current not in seen:
            seen.add(current)
            process = processes[current]
            if process.pivot_line is not None:
                return current != pid or number > process.pivot_line
            current = process.parent
            if current is not None and current not in processes:
                return False
        return False

    summary = TraceSummary()
    counted: set[int] = set()
    for number, (pid, text) in enumerate(records):
        call = _CALL.match(text)
        if not call or not inside(pid, number):
            continue
        counted.add(pid)
        name, args, result = call.groups()
        process = processes[pid]
        found = _paths_of_call(name, args, result, process)
        child = _child_pid(result) if name in _CLONE_CALLS else None
        if child is not None:
            processes[child].cwd = process.cwd
        if name == "execve" and found and not result.startswith("-1"):
            summary.executed.append(found[0])
        for path in found:
            if _kept(path, host_prefixes):
                summary.paths.add(path)
        listed = _FD_ARG.match(args) if name in _LISTING_CALLS else None
        if listed and _kept(unescape(listed.group(1)), host_prefixes):
            summary.listed.add(unescape(listed.group(1)))
    summary.processes = len(counted)
    return summary


def _enters_container(name: str, args: str, result: str) -> bool:
    """Tell whether a call moved the process into the container's filesystem view.

    ``runc run`` calls ``pivot_root`` in the container's init; ``runc exec`` joins the running
    container with ``setns(fd, CLONE_NEWNS)``.
    """
    if not result.startswith("0"):
        return False
    return name == "pivot_root" or (name == "setns" and args.endswith("CLONE_NEWNS"))


def _child_pid(result: str) -> int | None:
    """Return the host pid of the child that a clone, fork or vfork returned.

    Inside the container's pid namespace the call returns the namespace pid; with
    ``--decode-pids=pidns`` strace adds the host pid as ``7 /* 19165 in strace's PID NS */``.
    """
    translated = _TRANSLATED_PID.match(result)
    if translated:
        return int(translated.group(1))
    first = result.split(" ")[0]
    return int(first) if first.isdigit() and int(first) > 0 else None


def _paths_of_call(name: str, args: str, result: str, process: _Process) -> list[str]:
    """Return the paths one call touched and keep the process's working directory current."""
    cwd_match = re.search(rf"AT_FDCWD{_FD_PATH}", args)
    if cwd_match:
        process.cwd = unescape(cwd_match.group(1))
    if name in _SKIPPED_CALLS:
        return []
    found = _operand_paths(name, args, process.cwd)
    returned = _RETURNED_FD.match(result)
    if returned:
        found.append(unescape(returned.group(1)))
    if not result.startswith("-1"):
        if name == "chdir" and found:
            process.cwd = found[0]
        elif name == "fchdir":
            fd_arg = _FD_ARG.match(args)
            if fd_arg:
                process.cwd = unescape(fd_arg.group(1))
    return found


def _kept(path: str, host_prefixes: tuple[str, ...]) -> bool:
    if not path.startswith("/"):
        return False
    for tree in (*_IGNORED_TREES, *host_prefixes):
        if path == tree or path.startswith(tree.rstrip("/") + "/"):
            return False
    return True
