"""Read every layer of an image once: hash each file, note ELF headers, keep a few small files.

This is the only read of the image's layers during an analysis. Each regular-file member is
hashed with sha256 by :meth:`edgetrim.fs.safetar.TarMember.read_content`, its first bytes are
checked for an ELF header, and the content of the files that later steps parse (the dpkg
database, ``/etc/passwd``) is kept in memory. The members then go to a :class:`LayerStack`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from edgetrim.analyze.stack import LayerChanges, LayerStack, StoredCopy
from edgetrim.fs.safetar import LayerReader, PendingDigest, TarMember
from edgetrim.image.model import Image, Layer

log = logging.getLogger(__name__)

# Files whose content the package and attack-surface steps parse. They are small: the dpkg
# status file of a large Debian image is about 1 MB and each info/*.list a few KB.
_KEPT_FILES = re.compile(r"^(/var/lib/dpkg/status|/var/lib/dpkg/info/[^/]+\.list|/etc/passwd)$")
_ELF_MAGIC = b"\x7fELF"
# The ELF header fields read here end with e_type at byte 18.
_HEAD_SIZE = 18
# Files at least this large may be hashed on the read-ahead thread when it is idle. Handing
# over a smaller file costs about as much as hashing it. On the two example images (2 cores),
# thresholds from 16 KiB to 1 MiB gave scan times within the noise of a shared machine.
_HASH_LATER_SIZE = 64 << 10


@dataclass
class LayerStats:
    """Sizes and counts of one layer tar, measured while it is read."""

    index: int
    tar_bytes: int = 0
    entries: int = 0
    files: int = 0
    directories: int = 0
    whiteouts: int = 0
    content_bytes: int = 0


@dataclass
class ScanResult:
    """The output of one read of every layer: the replayed stack, layer stats and kept files.

    ``kept`` maps a stored copy id to the full content of that copy, for the files that
    :data:`_KEPT_FILES` matches.
    """

    stack: LayerStack
    layers: list[LayerStats]
    kept: dict[int, bytes] = field(default_factory=dict)


class _ContentSink:
    """Receive a file's content chunks: keep the first bytes, and all of it when asked."""

    __slots__ = ("head", "parts", "keep")

    def __init__(self, keep: bool):
        self.head = b""
        self.parts: list[bytes] = []
        self.keep = keep

    def write(self, chunk: bytes | memoryview) -> int:
        # The chunk is a view of a buffer that is reused, so what is kept is copied. A chunk
        # may end anywhere, even within the first bytes of the file.
        if len(self.head) < _HEAD_SIZE:
            self.head += bytes(chunk[: _HEAD_SIZE - len(self.head)])
        if self.keep:
            self.parts.append(bytes(chunk))
        return len(chunk)


def scan_image(image: Image) -> ScanResult:
    """Read and replay every layer of ``image`` in order; see the module docstring.

    Each layer is verified against its digest and diff ID as it is read. Raises
    ImageFormatError or UnsafeLayerError naming the layer when one is corrupt or hostile.
    """
    stack = LayerStack()
    result = ScanResult(stack=stack, layers=[])
    for index, layer in enumerate(image.layers):
        log.info("reading layer %d of %d (%s)", index + 1, len(image.layers), layer.label)
        result.layers.append(_scan_layer(layer, index, result))
    return result


def _scan_layer(layer: Layer, index: int, result: ScanResult) -> LayerStats:
    stats = LayerStats(index=index)
    changes = LayerChanges(entries=[], copies={}, whiteouts=[], opaque_dirs=[])
    pending: list[tuple[StoredCopy, PendingDigest]] = []
    with layer.read_tar() as stream:
        # The read-ahead thread reads the blob and verifies its digests while this one parses.
        reader = LayerReader(stream, layer_index=index, layer_name=layer.label, read_ahead=True)
        for item in reader:
            if not isinstance(item, TarMember):
                stats.whiteouts += 1
                target = changes.opaque_dirs if item.opaque else changes.whiteouts
                target.append(item.path)
                continue
            entry = item.entry
            stats.entries += 1
            if entry.is_dir:
                stats.directories += 1
            else:
                stats.files += 1
            if entry.is_regular:
                copy_id = _read_file(item, index, result, pending)
                changes.copies[len(changes.entries)] = copy_id
                stats.content_bytes += entry.size
            changes.entries.append(entry)
        # The reader read the stream to its end, end-of-archive padding included.
        stats.tar_bytes = reader.bytes_read
    # The iteration has ended, so the read-ahead thread has hashed every file handed to it.
    for copy, digest in pending:
        copy.digest = digest.result()
    result.stack.apply(index, changes, layer.label)
    _drop_hidden_kept(result)
    return stats


def _read_file(
    item: TarMember, layer: int, result: ScanResult, pending: list[tuple[StoredCopy, PendingDigest]]
) -> int:
    """Hash a regular file, now or on the read-ahead thread; return its stored copy id.

    A file hashed later has an empty digest until the layer has been read, and is added to
    ``pending`` then.
    """
    entry = item.entry
    keep = _KEPT_FILES.match(entry.path) is not None
    later: PendingDigest | None = None
    if keep or entry.size < _HASH_LATER_SIZE:
        sink = _ContentSink(keep)
        digest = item.read_content(sink)  # type: ignore[arg-type]
        head = sink.head
    else:
        later = item.hash_content(head_size=_HEAD_SIZE)
        digest = ""
        head = later.head
    copy = StoredCopy(
        layer=layer, path=entry.path, size=entry.size, digest=digest, elf_type=_elf_type(head)
    )
    copy_id = result.stack.add_copy(copy)
    if later is not None:
        pending.append((copy, later))
    if keep:
        result.kept[copy_id] = b"".join(sink.parts)
    return copy_id


def _elf_type(head: bytes) -> int:
    """Return ``e_type`` of an ELF header at the start of ``head``, or 0 if there is none."""
    if not head.startswith(_ELF_MAGIC) or len(head) < _HEAD_SIZE:
        return 0
    # e_type is at offset 16, in the byte order that EI_DATA (offset 5) names.
    if head[5] == 1:
        return int.from_bytes(head[16:18], "little")
    return int.from_bytes(head[16:18], "big")


def _drop_hidden_kept(result: ScanResult) -> None:
    for copy_id in [c for c in result.kept if result.stack.copies[c].hidden is not None]:
        del result.kept[copy_id]
