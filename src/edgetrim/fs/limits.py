"""Limits on what an untrusted layer or archive may expand to.

A crafted layer can be small on disk and huge once read: a gzip or zstd stream of zeros, a
sparse file that claims terabytes, millions of tiny entries, or a tar header that claims
gigabytes. Memory use of the readers does not grow with these sizes, because every stream is
read in bounded chunks, but time and disk use do. So edgetrim stops a layer at the limits below
and raises UnsafeLayerError naming the layer, the limit and the environment variable that
raises it. The defaults are far above what real images use and can be changed per process:

``EDGETRIM_MAX_LAYER_SIZE``
    Uncompressed bytes of one layer tar: the tar stream itself, and separately the sum of the
    sizes of its files, which counts sparse files at their full size. Default 32 GiB.
``EDGETRIM_MAX_LAYER_ENTRIES``
    Entries (files, directories, links, whiteouts) in one layer tar. Each costs a few hundred
    bytes of memory in a FileTree. Default 2,000,000.
``EDGETRIM_MAX_ARCHIVE_SIZE``
    Bytes of a docker or OCI archive that was compressed as a whole and is decompressed into a
    temporary file before reading. Default 64 GiB.

Values are whole byte counts, optionally with a unit. ``KB``, ``MB``, ``GB`` and ``TB`` are
powers of 1000, as in the rules of ``analyze --fail-if``. ``KiB``, ``MiB``, ``GiB`` and ``TiB``
are powers of 1024, and so are the bare letters ``K``, ``M``, ``G`` and ``T``, as GNU ``dd`` and
``docker run --memory`` read them. Units are case-insensitive.

The size of one tar header, including PAX and GNU extension records, is capped at
:data:`MAX_HEADER_BYTES` and cannot be changed: real headers are a few KiB.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from edgetrim.errors import InvalidOptionError

GIB = 1 << 30
DEFAULT_MAX_LAYER_BYTES = 32 * GIB
DEFAULT_MAX_LAYER_ENTRIES = 2_000_000
DEFAULT_MAX_ARCHIVE_BYTES = 64 * GIB
# Extension headers carry long names (PATH_MAX is 4096) and xattrs (at most 64 KiB per value
# on Linux), so 16 MiB for one header chain leaves a wide margin.
MAX_HEADER_BYTES = 16 << 20

LAYER_SIZE_VARIABLE = "EDGETRIM_MAX_LAYER_SIZE"
LAYER_ENTRIES_VARIABLE = "EDGETRIM_MAX_LAYER_ENTRIES"
ARCHIVE_SIZE_VARIABLE = "EDGETRIM_MAX_ARCHIVE_SIZE"

_SIZE_RE = re.compile(r"^([0-9]+)\s*([A-Za-z]*)$")
# Keys are lower case, because units are matched case-insensitively.
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
}
_UNIT_CONVENTION = (
    "KB, MB, GB and TB are powers of 1000, while K, M, G, T, KiB, MiB, GiB and TiB are powers "
    "of 1024"
)


@dataclass(frozen=True)
class LayerLimits:
    """The maximum sizes that one layer tar, or one whole compressed archive, may expand to."""

    max_bytes: int = DEFAULT_MAX_LAYER_BYTES
    max_entries: int = DEFAULT_MAX_LAYER_ENTRIES
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES

    @classmethod
    def from_environment(cls) -> LayerLimits:
        """Return the defaults, each replaced by its environment variable when that is set."""
        return cls(
            max_bytes=_read_size(LAYER_SIZE_VARIABLE, DEFAULT_MAX_LAYER_BYTES),
            max_entries=_read_size(LAYER_ENTRIES_VARIABLE, DEFAULT_MAX_LAYER_ENTRIES),
            max_archive_bytes=_read_size(ARCHIVE_SIZE_VARIABLE, DEFAULT_MAX_ARCHIVE_BYTES),
        )


def parse_size(text: str) -> int:
    """Parse a byte count such as ``4096``, ``500MB`` or ``8GiB``; raise ValueError if invalid.

    The units are those of the module docstring: ``1KB`` is 1000 bytes, ``1K`` and ``1KiB``
    are 1024.
    """
    match = _SIZE_RE.match(text.strip())
    factor = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or factor is None:
        raise ValueError(
            f"{text!r} is not a size; write a whole number of bytes, optionally with a unit: "
            f"{_UNIT_CONVENTION}"
        )
    return int(match.group(1)) * factor


def _read_size(variable: str, default: int) -> int:
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise InvalidOptionError(f"environment variable {variable}: {exc}") from None
    if value <= 0:
        raise InvalidOptionError(f"environment variable {variable}: must be above 0")
    return value
