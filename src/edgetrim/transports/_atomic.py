"""Write files through a temporary file that is renamed into place only when complete.

An interrupted or failed write leaves the destination as it was: either absent or the
previous complete file, never half-written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from edgetrim.errors import ImageWriteError

_FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Yield a file open for writing that replaces ``dest`` when the block ends normally.

    The temporary file sits next to ``dest`` (so the rename stays on one file system) and is
    deleted if the block raises. OSError while creating, writing or renaming becomes
    ImageWriteError naming ``dest``.
    """
    try:
        fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(dest, exc) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, _FILE_MODE)
        os.replace(temp_name, dest)
    except OSError as exc:
        _remove_quietly(temp_name)
        raise write_error(dest, exc) from None
    except BaseException:
        _remove_quietly(temp_name)
        raise


def write_bytes(dest: Path, data: bytes) -> None:
    """Replace ``dest`` with ``data`` through a temporary file."""
    with atomic_file(dest) as stream:
        stream.write(data)


def write_error(dest: Path, exc: OSError) -> ImageWriteError:
    """Return the ImageWriteError for an OSError while writing ``dest``."""
    reason = exc.strerror or str(exc)
    return ImageWriteError(
        f"{dest}: cannot write ({reason}); check that the folder exists, is writable "
        "and has free space"
    )


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
