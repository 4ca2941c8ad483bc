"""A worker process of :class:`edgetrim.fs.hashpool.HashPool`: sha256 of byte ranges of files.

It runs as ``python -I -S _hashworker.py`` and imports only the standard library. The files are
descriptors it inherits. Jobs arrive on standard input and results leave on standard output,
both as fixed-size records whose layouts :mod:`edgetrim.fs.hashpool` shares with this file.

Jobs for single files run before the remaining steps of a whole-layer job, so that the caller,
which needs the file digests first, gets them while the layer digests are still computed.
The worker ends when its standard input ends and every job is done.
"""

import collections
import hashlib
import mmap
import os
import select
import signal
import struct
import sys

# kind, file descriptor, ticket, offset, length.
JOB = struct.Struct("<BxxxIQQQ")
# kind, ticket, digest or error number, and the range's first bytes (fewer if it is shorter).
RESULT = struct.Struct("<BxxxxxxxQ32s32s")
HEAD_SIZE = 32
FILE_JOB = 1
LAYER_JOB = 2
DIGEST = 1
FAILED = 2
# A range is read and hashed this many bytes at a time, and a layer job yields to file jobs
# after each step.
STEP = 8 << 20


class _Job:
    __slots__ = ("fd", "ticket", "offset", "left", "hasher", "head")

    def __init__(self, fd: int, ticket: int, offset: int, length: int):
        self.fd = fd
        self.ticket = ticket
        self.offset = offset
        self.left = length
        self.hasher = hashlib.sha256()
        self.head = b""


class _Worker:
    def __init__(self) -> None:
        self.files: collections.deque[_Job] = collections.deque()
        self.layers: collections.deque[_Job] = collections.deque()
        self.partial = b""
        self.input_open = True

    def take_jobs(self, wait: bool) -> None:
        """Read the jobs that have arrived; with ``wait``, wait for at least some bytes."""
        if wait:
            select.select([0], [], [])
        try:
            data = os.read(0, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self.input_open = False
            return
        data = self.partial + data
        whole = len(data) - len(data) % JOB.size
        for kind, fd, ticket, offset, length in JOB.iter_unpack(data[:whole]):
            job = _Job(fd, ticket, offset, length)
            (self.files if kind == FILE_JOB else self.layers).append(job)
        self.partial = data[whole:]

    def step(self, job: _Job, limit: int) -> bool:
        """Hash up to ``limit`` more bytes of ``job``; return whether it is complete.

        The bytes are mapped, not copied: the page cache is hashed where it lies. Each window
        is unmapped after use, so this process maps less than one window of the file at a time.
        """
        while job.left and limit > 0:
            size = min(job.left, STEP, limit)
            if os.fstat(job.fd).st_size < job.offset + size:
                # Mapping past the end would fault when the bytes are touched.
                raise EOFError
            start = job.offset - job.offset % mmap.ALLOCATIONGRANULARITY
            with (
                mmap.mmap(
                    job.fd, job.offset + size - start, offset=start, access=mmap.ACCESS_READ
                ) as window,
                memoryview(window) as view,
            ):
                if not job.head:
                    job.head = bytes(view[job.offset - start : job.offset - start + HEAD_SIZE])
                job.hasher.update(view[job.offset - start :])
            job.offset += size
            job.left -= size
            limit -= size
        return not job.left

    def run(self) -> None:
        while True:
            self.take_jobs(wait=self.input_open and not self.files and not self.layers)
            if self.files:
                job = self.files.popleft()
                self.finish(job, job.left)
            elif self.layers:
                job = self.layers[0]
                if self.finish(job, STEP):
                    self.layers.popleft()
            elif not self.input_open:
                return

    def finish(self, job: _Job, limit: int) -> bool:
        """Advance ``job`` and send its result once it is complete or has failed."""
        try:
            if not self.step(job, limit):
                return False
            record = RESULT.pack(DIGEST, job.ticket, job.hasher.digest(), job.head)
        except EOFError:
            record = RESULT.pack(FAILED, job.ticket, (0).to_bytes(32, "little"), b"")
        except OSError as exc:
            errno = (exc.errno or 0).to_bytes(32, "little")
            record = RESULT.pack(FAILED, job.ticket, errno, b"")
        job.left = 0
        _write_all(record)
        return True


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> None:
    # The caller handles Ctrl-C; this process ends when the caller closes its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.set_blocking(0, False)
    try:
        _Worker().run()
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
