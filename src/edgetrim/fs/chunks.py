"""Read a stream in large chunks into a few reusable buffers, optionally on a second thread.

:class:`edgetrim.fs.tarstream.TarStream` parses layer tars from these chunks. Reusing buffers,
where a plain ``read`` would allocate a fresh ``bytes`` object each time, spares the page
faults of large fresh allocations, and the memoryviews handed out copy nothing.

A chunk stays valid only until the next call of ``next_chunk``: its buffer is then refilled.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

# Scanning the example images of bench/analyze_vs_dive.py (2 cores) was about 5% quicker with
# 1 MiB chunks than with 256 KiB: the read-ahead thread then takes the GIL back less often.
CHUNK_SIZE = 1 << 20
# The read-ahead thread takes the GIL back after each read and each digest update of a chunk,
# and waits for it while the parsing thread runs Python. 4 MiB chunks make those waits a
# quarter as frequent as 1 MiB chunks. That made `edgetrim analyze` of the examples of
# bench/analyze_vs_dive.py a few percent quicker on 2 cores (an estimate: the machine was shared).
READ_AHEAD_CHUNK_SIZE = 4 << 20
# Chunks the read-ahead thread may fill before the parser takes them: 16 MiB in all.
READ_AHEAD_BUFFERS = 4

_EMPTY = memoryview(b"")


class Readable(Protocol):
    """A binary stream: ``read`` is required, ``readinto`` is used when present."""

    def read(self, size: int = -1, /) -> bytes: ...


class ChunkSource(Protocol):
    """Successive chunks of a stream; an empty chunk means the end of the stream."""

    def next_chunk(self) -> memoryview:
        """Return the next chunk, which is valid until the next call."""
        ...

    def skip(self, size: int) -> int | None:
        """Pass over the ``size`` bytes after the current chunk without reading them.

        Returns how many bytes there were, fewer if the stream ended, or None, skipping
        nothing, if this source cannot skip without reading. The current chunk is then invalid.
        """
        ...

    def close(self) -> None:
        """Stop reading. The caller closes the stream after."""
        ...


def fill(stream: Readable, view: memoryview) -> int:
    """Read from ``stream`` until ``view`` is full or the stream ends; return the bytes read."""
    readinto = getattr(stream, "readinto", None)
    filled = 0
    while filled < len(view):
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            data = stream.read(len(view) - filled)
            count = len(data)
            view[filled : filled + count] = data
        if not count:
            break
        filled += count
    return filled


class BlockingChunks:
    """Chunks read on the calling thread into one reusable buffer.

    When the stream has a ``skip(size) -> int`` method, :meth:`skip` uses it and so reads
    nothing; :class:`edgetrim.fs.hashpool.RangeStream` has one.
    """

    def __init__(self, stream: Readable, chunk_size: int = CHUNK_SIZE):
        self._stream = stream
        self._buffer = memoryview(bytearray(chunk_size))

    def next_chunk(self) -> memoryview:
        return self._buffer[: fill(self._stream, self._buffer)]

    def skip(self, size: int) -> int | None:
        stream_skip = getattr(self._stream, "skip", None)
        return None if stream_skip is None else int(stream_skip(size))

    def close(self) -> None:
        pass


class ReadAheadChunks:
    """Chunks read by a worker thread that stays up to ``buffers`` chunks ahead of the caller.

    Whatever the stream does while it is read, such as verifying a digest, runs on the worker.
    sha256 in hashlib and file reads release the GIL, so that work overlaps with the caller's
    parsing on a second core. An exception in the worker, such as a digest mismatch at the end
    of the stream, is raised by the caller's next ``next_chunk``.
    """

    def __init__(
        self,
        stream: Readable,
        chunk_size: int = READ_AHEAD_CHUNK_SIZE,
        buffers: int = READ_AHEAD_BUFFERS,
    ):
        self._stream = stream
        # A buffer is in ``_inbox``, being filled, in ``_filled`` or held by the caller, so the
        # memory in use is at most ``buffers * chunk_size`` whatever the stream's size.
        self._inbox: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self._filled: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
        for _ in range(buffers):
            self._inbox.put(bytearray(chunk_size))
        self._caller_buffer: bytearray | None = None
        self._done = False
        # Set by close: the worker reads no more.
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="layer-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reading = True
        while (buffer := self._inbox.get()) is not None:
            if not reading or self._closing:
                continue
            try:
                count = fill(self._stream, memoryview(buffer))
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                reading = False
                self._filled.put(exc)
                continue
            self._filled.put((buffer, count))
            reading = count > 0

    def next_chunk(self) -> memoryview:
        if self._caller_buffer is not None:
            self._inbox.put(self._caller_buffer)
            self._caller_buffer = None
        if self._done:
            return _EMPTY
        item = self._filled.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        buffer, count = item
        if not count:
            self._done = True
            return _EMPTY
        self._caller_buffer = buffer
        return memoryview(buffer)[:count]

    def skip(self, size: int) -> int | None:
        # The worker reads ahead, so the bytes are read already.
        return None

    def close(self) -> None:
        self._closing = True
        self._inbox.put(None)
        self._thread.join()
