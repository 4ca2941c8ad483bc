"""Read every layer of an image once: hash each file, note ELF headers, keep a few small files.

This is the only read of the image's layers during an analysis. Each regular-file member is
hashed with sha256 by :meth:`edgetrim.fs.safetar.TarMember.read_content`, its first bytes are
checked for an ELF header, and the content of the files that later steps parse (the dpkg
database, ``/etc/passwd``) is kept in memory. The members then go to a :class:`LayerStack`.
"""

from __future__ import annotations

import io
import logging
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

from edgetrim.analyze.stack import LayerChanges, LayerStack, StoredCopy
from edgetrim.fs.safetar import TarMember, iter_layer
from edgetrim.image.model import Image, Layer

log = logging.getLogger(__name__)

# Files whose content the package and attack-surface steps parse. They are small: the dpkg
# status file of a large Debian image is about 1 MB and each info/*.list a few KB.
_KEPT_FILES = re.compile(r"^(/var/lib/dpkg/status|/var/lib/dpkg/info/[^/]+\.list|/etc/passwd)$")
# tarfile reads 10 KiB at a time; a buffer serves those reads from memory. Reads of 1 MiB
# or more were several times slower (Python 3.11, glibc 2.36): each fresh buffer that large
# is mapped anew and page-faulted in.
_READ_BUFFER = 262144
# Chunks read ahead by the reader thread, so at most this many buffers wait in memory.
_READ_AHEAD = 16
_ELF_MAGIC = b"\x7fELF"


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

    def write(self, chunk: bytes) -> int:
        if not self.head:
            self.head = bytes(chunk[:20])
        if self.keep:
            self.parts.append(bytes(chunk))
        return len(chunk)


class _ReadAhead(io.RawIOBase):
    """Read a stream to its end in a thread, and serve its bytes to the caller in order.

    Verifying a layer's digests (sha256, in C, without the GIL) then runs on one core while
    the caller parses the tar and hashes files on the other. An exception in the thread,
    such as a digest mismatch at the end of the stream, is raised in the caller's read.
    ``count`` is the number of bytes served: the uncompressed size of the layer tar.
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(_READ_AHEAD)
        self._current = memoryview(b"")
        self._done = False
        self._stop = threading.Event()
        self.count = 0
        self._thread = threading.Thread(target=self._fill, name="layer-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._stream.read(_READ_BUFFER)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._current:
            if self._done:
                return 0
            item = self._chunks.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._current = memoryview(item)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        self.count += size
        return size

    def close(self) -> None:
        """Stop the thread; the caller closes the stream it passed in, after this."""
        self._stop.set()
        self._thread.join()
        super().close()


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
    with layer.read_tar() as stream, _ReadAhead(stream) as ahead:
        buffered = io.BufferedReader(ahead, _READ_BUFFER)
        for item in iter_layer(buffered, layer_index=index, layer_name=layer.label):
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
                copy_id = _read_file(item, index, result)
                changes.copies[len(changes.entries)] = copy_id
                stats.content_bytes += entry.size
            changes.entries.append(entry)
        # Read the tar to its end so that the count includes the end-of-archive padding.
        while buffered.read(_READ_BUFFER):
            pass
        stats.tar_bytes = ahead.count
    result.stack.apply(index, changes, layer.label)
    _drop_hidden_kept(result)
    return stats


def _read_file(item: TarMember, layer: int, result: ScanResult) -> int:
    entry = item.entry
    keep = _KEPT_FILES.match(entry.path) is not None
    sink = _ContentSink(keep)
    digest = item.read_content(sink)  # type: ignore[arg-type]
    elf_type = 0
    if sink.head.startswith(_ELF_MAGIC) and len(sink.head) >= 18:
        # e_type is at offset 16, in the byte order that EI_DATA (offset 5) names.
        if sink.head[5] == 1:
            elf_type = int.from_bytes(sink.head[16:18], "little")
        else:
            elf_type = int.from_bytes(sink.head[16:18], "big")
    copy_id = result.stack.add_copy(
        StoredCopy(layer=layer, path=entry.path, size=entry.size, digest=digest, elf_type=elf_type)
    )
    if keep:
        result.kept[copy_id] = b"".join(sink.parts)
    return copy_id


def _drop_hidden_kept(result: ScanResult) -> None:
    for copy_id in [c for c in result.kept if result.stack.copies[c].hidden is not None]:
        del result.kept[copy_id]
