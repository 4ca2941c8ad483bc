"""Hash byte ranges of local files with sha256 in worker processes, beside the Python that parses.

``edgetrim analyze`` hashes every file of an image and checks every layer digest: two sha256
passes over the image's bytes. In one Python process those passes share a core with the tar
parsing, and threads contend for the GIL between calls. A layer may be a plain range of a
local file, as in a ``docker save`` archive or an OCI layout. The parser then sends worker
processes the offset and length of each large file and of each whole layer, and the workers
read and hash those bytes themselves. The worker (:mod:`edgetrim.fs._hashworker`) is a
separate interpreter that imports only the standard library.

Each job goes to the worker with the fewest bytes assigned so far. Workers hash file jobs before
the remaining steps of layer jobs, so that the file digests, needed first, are ready soon after
the parsing ends, and the layer digests finish while the caller analyzes.

The workers read the files through descriptors they inherit from this process, so a file
renamed or replaced meanwhile does not change what they read. A file written to meanwhile
does; :class:`StoredFile` notices that from its status, and callers check it at the end.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetrim.errors import EdgetrimError
from edgetrim.fs import _hashworker as protocol

WORKERS_VARIABLE = "EDGETRIM_HASH_WORKERS"
# More workers than this do not help: the parsing process is then the slowest part.
MAX_WORKERS = 4
# Jobs are sent in batches of about this many bytes of work, or at a flush.
_BATCH_BYTES = 4 << 20
_WORKER_SCRIPT = Path(protocol.__file__)


class HashWorkerError(EdgetrimError):
    """A hashing worker process could not start or stopped before it finished its jobs."""


class RangeReadError(Exception):
    """A worker could not read a range: the file ended early (``errno`` 0) or a read failed."""

    def __init__(self, errno: int):
        super().__init__(os.strerror(errno) if errno else "the file ended before the range did")
        self.errno = errno


def default_workers() -> int:
    """Return how many worker processes to start: from the environment, else by CPUs.

    One CPU gets none, since the workers would only take turns with the parser.
    """
    value = os.environ.get(WORKERS_VARIABLE, "").strip()
    if value:
        try:
            count = int(value)
        except ValueError:
            raise HashWorkerError(
                f"{WORKERS_VARIABLE}={value!r} is not a whole number; set it to 0 or more"
            ) from None
        return max(count, 0)
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus < 2 else min(cpus, MAX_WORKERS)


@dataclass(frozen=True)
class RangeDigest:
    """The sha256 of a range, in hex, and the range's first bytes (up to 32, zero-padded)."""

    hex: str
    head: bytes


@dataclass(frozen=True)
class StoredFile:
    """An open local file that workers read, with its status when it was opened."""

    fd: int
    path: str
    status: tuple[int, int, int, int]

    @classmethod
    def open(cls, path: str) -> StoredFile:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return cls(fd, path, _status(fd))

    def changed(self) -> bool:
        """Return whether the file was written to, truncated or extended since it was opened."""
        return _status(self.fd) != self.status

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> StoredFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _status(fd: int) -> tuple[int, int, int, int]:
    info = os.fstat(fd)
    # Any write updates ctime, which no caller can set back.
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class RangeStream:
    """A read-only stream over ``size`` bytes at ``offset`` of an open file, read with pread.

    It has ``skip``, so :class:`edgetrim.fs.chunks.BlockingChunks` passes over skipped
    members without reading them.
    """

    def __init__(self, fd: int, offset: int, size: int):
        self._fd = fd
        self._position = offset
        self._left = size

    def readinto(self, buffer: memoryview) -> int:
        view = memoryview(buffer)[: self._left]
        if not view:
            return 0
        count = os.preadv(self._fd, [view], self._position)
        self._position += count
        self._left -= count
        return count

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = os.pread(self._fd, size, self._position)
        self._position += len(data)
        self._left -= len(data)
        return data

    def skip(self, size: int) -> int:
        size = min(size, self._left)
        self._position += size
        self._left -= size
        return size


class _Worker:
    """One worker process, its pipes, and the jobs not yet sent to it."""

    def __init__(self, fds: Sequence[int]):
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=tuple(fds),
            )
        except OSError as exc:
            raise HashWorkerError(
                f"cannot start a hashing worker with {sys.executable} ({exc.strerror}); "
                f"set {WORKERS_VARIABLE}=0 to hash in this process"
            ) from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.input = self.process.stdin.fileno()
        self.output = self.process.stdout.fileno()
        os.set_blocking(self.input, False)
        os.set_blocking(self.output, False)
        self.load = 0
        self.outstanding = 0
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._received = b""

    def add(self, job: bytes, length: int) -> bool:
        """Queue a job; return whether the batch is now large enough to send."""
        self._batch.append(job)
        self._batch_bytes += length
        self.load += length
        self.outstanding += 1
        return self._batch_bytes >= _BATCH_BYTES

    def take_batch(self) -> bytes:
        data = b"".join(self._batch)
        self._batch.clear()
        self._batch_bytes = 0
        return data

    def receive(self) -> list[tuple[int, int, bytes, bytes]]:
        """Read the results that have arrived: (kind, ticket, payload, head) each."""
        try:
            data = os.read(self.output, 1 << 16)
        except BlockingIOError:
            return []
        if not data:
            raise self.stopped_error()
        data = self._received + data
        whole = len(data) - len(data) % protocol.RESULT.size
        self._received = data[whole:]
        results = list(protocol.RESULT.iter_unpack(data[:whole]))
        self.outstanding -= len(results)
        return results

    def stopped_error(self) -> HashWorkerError:
        status = self.process.wait()
        return HashWorkerError(
            f"a hashing worker process stopped with status {status} before it finished; "
            f"run again, or set {WORKERS_VARIABLE}=0 to hash in this process"
        )

    def close(self, *, kill: bool) -> None:
        # Nobody collects the results of a worker's remaining jobs, so it is stopped.
        if (kill or self.outstanding) and self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(BrokenPipeError):
                stream.close()  # type: ignore[union-attr]
        self.process.wait()


class HashPool:
    """Worker processes that hash ranges of the files ``fds`` and return tickets for the digests.

    Use it as a context manager: leaving the block normally waits for the workers to finish,
    and an exception stops them at once.
    """

    def __init__(self, fds: Sequence[int], workers: int):
        if workers < 1:
            raise ValueError("a hash pool needs at least one worker")
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(_Worker(fds))
        except BaseException:
            self.close(kill=True)
            raise
        self._next_ticket = 0
        self._results: dict[int, RangeDigest | RangeReadError] = {}

    def __enter__(self) -> HashPool:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        self.close(kill=kind is not None)

    def hash_file(self, fd: int, offset: int, length: int) -> int:
        """Queue the sha256 of one file's bytes; return the ticket for :meth:`digest`."""
        return self._queue(protocol.FILE_JOB, fd, offset, length)

    def hash_layer(self, fd: int, offset: int, length: int) -> int:
        """Queue the sha256 of a whole layer's bytes, computed after the queued file jobs."""
        return self._queue(protocol.LAYER_JOB, fd, offset, length)

    def _queue(self, kind: int, fd: int, offset: int, length: int) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        worker = min(self._workers, key=_load)
        if worker.add(protocol.JOB.pack(kind, fd, ticket, offset, length), length):
            self._send(worker, worker.take_batch())
        return ticket

    def flush(self) -> None:
        """Send every queued job now."""
        for worker in self._workers:
            data = worker.take_batch()
            if data:
                self._send(worker, data)

    def result(self, ticket: int) -> RangeDigest:
        """Return the digest and first bytes for ``ticket``, waiting for them if need be.

        Raises RangeReadError if the worker could not read the range, and HashWorkerError if
        a worker stopped.
        """
        if ticket not in self._results:
            self.flush()
        while ticket not in self._results:
            self._wait(write_to=None)
        result = self._results.pop(ticket)
        if isinstance(result, RangeReadError):
            raise result
        return result

    def digest(self, ticket: int) -> str:
        """Return the hex digest for ``ticket``; see :meth:`result`."""
        return self.result(ticket).hex

    def _send(self, worker: _Worker, data: bytes) -> None:
        """Write ``data`` to ``worker``, reading results meanwhile so that neither side blocks."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(worker.input, view) :]
            except BlockingIOError:
                self._wait(write_to=worker)
            except BrokenPipeError:
                raise worker.stopped_error() from None

    def _wait(self, write_to: _Worker | None) -> None:
        """Wait until some worker has results, or ``write_to`` can take more input."""
        readers = [w.output for w in self._workers if w.outstanding > 0]
        if not readers and write_to is None:
            raise HashWorkerError("waited for a digest that no hashing worker computes")
        writers = [write_to.input] if write_to is not None else []
        readable, _, _ = select.select(readers, writers, [])
        for worker in self._workers:
            if worker.output in readable:
                for kind, ticket, payload, head in worker.receive():
                    if kind == protocol.DIGEST:
                        self._results[ticket] = RangeDigest(payload.hex(), head)
                    else:
                        self._results[ticket] = RangeReadError(int.from_bytes(payload, "little"))

    def close(self, *, kill: bool = False) -> None:
        for worker in self._workers:
            worker.close(kill=kill)
        self._workers.clear()


def _load(worker: _Worker) -> int:
    return worker.load
