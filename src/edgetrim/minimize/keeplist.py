"""The keep-list: a versioned, human-editable text file of the paths a minimized image keeps.

Format, version 1::

    edgetrim-keep-list 1
    # any comment line
    /usr/bin/python3.11  # executed by the traced run

One path per line, percent-encoded where it holds a space, ``#``, ``%``, a control character
or bytes that are not UTF-8; an optional comment after ``  #`` says why the path is kept.
Replaying a keep-list skips the trace: each listed path is kept again with its parents,
symlinks and libraries, so a path added by hand brings what it needs.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from edgetrim.errors import InvalidOptionError
from edgetrim.transports._atomic import write_bytes

MAGIC = "edgetrim-keep-list"
VERSION = 1
_SAFE = "/-_.~+@:,=!$&'()*;[]{}^"


def encode_path(path: str) -> str:
    """Percent-encode the characters of ``path`` that the line format cannot carry as they are."""
    return urllib.parse.quote(path.encode("utf-8", "surrogateescape"), safe=_SAFE)


def decode_path(text: str) -> str:
    """Undo :func:`encode_path`."""
    return urllib.parse.unquote(text, errors="surrogateescape")


def format_keep_list(entries: Iterable[tuple[str, str]], *, header: Iterable[str] = ()) -> str:
    """Return the text of a keep-list with one ``path  # reason`` line per entry, sorted by path."""
    lines = [f"{MAGIC} {VERSION}"]
    lines += [f"# {line}" for line in header]
    for path, reason in sorted(entries):
        # Reasons quote paths, which may hold newlines or other control characters.
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
        lines.append(f"{encode_path(path)}  # {reason}" if reason else encode_path(path))
    return "\n".join(lines) + "\n"


def write_keep_list(
    target: Path, entries: Iterable[tuple[str, str]], *, header: Iterable[str] = ()
) -> None:
    """Write a keep-list through a temporary file that is renamed into place."""
    write_bytes(target.absolute(), format_keep_list(entries, header=header).encode("utf-8"))


def read_keep_list(source: Path) -> list[tuple[str, str]]:
    """Read a keep-list; raise InvalidOptionError naming the file and line of any invalid line."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidOptionError(f"--keep-list {source}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOptionError(f"--keep-list {source}: cannot be read ({exc})") from exc
    lines = text.splitlines()
    if not lines or lines[0].split() != [MAGIC, str(VERSION)]:
        raise InvalidOptionError(
            f"--keep-list {source}: the first line must be '{MAGIC} {VERSION}'; "
            "write the file with --write-keep-list"
        )
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        path_text, _, reason = stripped.partition("  #")
        path = decode_path(path_text.strip())
        if not path.startswith("/") or "\x00" in path:
            raise InvalidOptionError(
                f"--keep-list {source}:{number}: {path_text.strip()!r} is not an absolute path"
            )
        entries.append(("/" + posixpath.normpath(path).lstrip("/"), reason.strip()))
    return entries
