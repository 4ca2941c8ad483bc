"""Read every layer of an image once: hash each file, note ELF headers, keep a few small files.

This is the only read of the image's layers during an analysis. Each regular file is hashed
with sha256, its first bytes are checked for an ELF header, and the content of the files that
later steps parse (the dpkg database, ``/etc/passwd``) is kept in memory. The members then go to
a :class:`LayerStack`.

Where a layer lies as an uncompressed tar in a local file, worker processes hash it and its
large files in place (:mod:`edgetrim.analyze.stored`), and this process parses. Otherwise this
process hashes the files with :meth:`edgetrim.fs.safetar.TarMember.read_content` while a second
thread reads the layer and verifies it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edgetrim.analyze.stack import LayerChanges, LayerStack, StoredCopy
from edgetrim.analyze.stored import StoredLayers, StoredPlace
from edgetrim.fs.entry import FileType
from edgetrim.fs.safetar import LayerReader, TarMember
from edgetrim.image.model import Image, Layer

log = logging.getLogger(__name__)

# Files whose content the package and attack-surface steps parse. They are small: the dpkg
# status file of a large Debian image is about 1 MB and each info/*.list a few KB.
_KEPT_FILES = re.compile(r"^(/var/lib/dpkg/status|/var/lib/dpkg/info/[^/]+\.list|/etc/passwd)$")
# Every path that _KEPT_FILES matches starts with one of these, which is quicker to test.
_KEPT_PREFIXES = ("/var/lib/dpkg/", "/etc/passwd")
_ELF_MAGIC = b"\x7fELF"
# The ELF header fields read here end with e_type at byte 18.
_HEAD_SIZE = 18
# Regular files of this size or more go to the hashing workers when the layer is read in
# place. Smaller ones are hashed here, because a job's cost (a message, a result, a mapping)
# would be close to the hashing. In paired runs on the python-http example (2 CPUs), 256 KiB
# took about 0.93 times as long as 64 KiB, 16 KiB was slower, and 1 or 4 MiB no different.
_HAND_OVER_SIZE = 256 << 10


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
    :data:`_KEPT_FILES` matches. The digest and ELF type of a copy that a worker process hashes
    are set by :meth:`wait_for_copies`; until then they are empty.
    """

    stack: LayerStack
    layers: list[LayerStats]
    kept: dict[int, bytes] = field(default_factory=dict)
    _pending: Callable[[], None] | None = field(default=None, repr=False)

    def wait_for_copies(self) -> None:
        """Wait until every stored copy has its digest and ELF type."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending()


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


@contextlib.contextmanager
def scan_image(image: Image) -> Iterator[ScanResult]:
    """Read and replay every layer of ``image`` in order; see the module docstring.

    Each layer is verified against its digest and diff ID. For layers that worker processes
    hash (see :class:`StoredLayers`), that check completes when the block ends normally, so
    the caller can analyze meanwhile and must not report before. The caller calls
    :meth:`ScanResult.wait_for_copies` before it reads digests or ELF types, and can work on
    the rest first. Raises ImageFormatError or UnsafeLayerError naming the layer when one is
    corrupt or hostile.
    """
    stack = LayerStack()
    result = ScanResult(stack=stack, layers=[])
    with StoredLayers(image) as stored:
        for index, layer in enumerate(image.layers):
            log.info("reading layer %d of %d (%s)", index + 1, len(image.layers), layer.label)
            result.layers.append(_scan_layer(layer, index, result, stored))
        result._pending = functools.partial(_take_worker_results, stored, stack)
        yield result
        result.wait_for_copies()
        stored.verify()


def _take_worker_results(stored: StoredLayers, stack: LayerStack) -> None:
    for copy_id, found in stored.file_results():
        copy = stack.copies[copy_id]
        copy.digest = found.hex
        copy.elf_type = _elf_type(found.head[: copy.size])


def _scan_layer(layer: Layer, index: int, result: ScanResult, stored: StoredLayers) -> LayerStats:
    stats = LayerStats(index=index)
    changes = LayerChanges(entries=[], copies=[], whiteouts=[], opaque_dirs=[])
    entries = changes.entries
    copies = changes.copies
    directories = content_bytes = 0
    place = stored.start_layer(index, layer)
    with layer.read_tar() if place is None else contextlib.nullcontext(place.stream()) as stream:
        # Without worker processes, a second thread reads the blob and verifies its digests
        # while this thread parses and hashes the files.
        reader = LayerReader(
            stream, layer_index=index, layer_name=layer.label, read_ahead=place is None
        )
        for item in reader:
            if type(item) is not TarMember:
                target = changes.opaque_dirs if item.opaque else changes.whiteouts  # type: ignore[union-attr]
                target.append(item.path)  # type: ignore[union-attr]
                continue
            entry = item.entry
            kind = entry.type
            if kind is FileType.REGULAR:
                if place is not None and entry.size >= _HAND_OVER_SIZE and item.offset is not None:
                    copies.append(_hand_over_file(item, index, result, place))
                else:
                    copies.append(_read_file(item, index, result))
                content_bytes += entry.size
            else:
                copies.append(None)
                if kind is FileType.DIRECTORY:
                    directories += 1
            entries.append(entry)
        # The reader read the stream to its end, end-of-archive padding included.
        stats.tar_bytes = reader.bytes_read
    stats.entries = len(entries)
    stats.directories = directories
    stats.files = stats.entries - directories
    stats.whiteouts = len(changes.whiteouts) + len(changes.opaque_dirs)
    stats.content_bytes = content_bytes
    result.stack.apply(index, changes, layer.label)
    _drop_hidden_kept(result)
    return stats


def _hand_over_file(item: TarMember, layer: int, result: ScanResult, place: StoredPlace) -> int:
    """Leave a large file to a worker, which returns its digest and head; return its copy id.

    Files whose content is kept are read here, since their bytes are needed. The iteration
    passes over the content of the others without reading it.
    """
    entry = item.entry
    path = entry.path
    if path.startswith(_KEPT_PREFIXES) and _KEPT_FILES.match(path) is not None:
        return _read_file(item, layer, result)
    copy_id = result.stack.add_copy(StoredCopy(layer, path, entry.size, ""))
    place.hash_file(copy_id, path, item.offset, entry.size)  # type: ignore[arg-type]
    return copy_id


def _read_file(item: TarMember, layer: int, result: ScanResult) -> int:
    """Hash a regular file and note its ELF type; return its stored copy id."""
    entry = item.entry
    path = entry.path
    keep = path.startswith(_KEPT_PREFIXES) and _KEPT_FILES.match(path) is not None
    view = item.content_at_once()
    if view is not None:
        # The usual case for small files: one hash call, without a generator or a sink.
        digest = entry.digest = hashlib.sha256(view).hexdigest()
        head = bytes(view[:_HEAD_SIZE])
        content = bytes(view) if keep else b""
    else:
        sink = _ContentSink(keep)
        digest = item.read_content(sink)  # type: ignore[arg-type]
        head = sink.head
        content = b"".join(sink.parts)
    copy_id = result.stack.add_copy(StoredCopy(layer, path, entry.size, digest, _elf_type(head)))
    if keep:
        result.kept[copy_id] = content
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
