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

Values are byte counts, optionally with a binary suffix: ``512M``, ``8G``, ``1T`` (K, M, G and
T are powers of 1024). The size of one tar header, including PAX and GNU extension records, is
capped at :data:`MAX_HEADER_BYTES` and cannot be changed: real headers are a few KiB.
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

_SIZE_RE = re.compile(r"^([0-9]+)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


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
    """Parse a byte count such as ``4096``, ``512M`` or ``8GiB``; raise ValueError if invalid."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size; write bytes, or a number with K, M, G or T")
    return int(match.group(1)) * _SUFFIXES[match.group(2).upper()]


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
