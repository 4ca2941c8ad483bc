"""The hashing worker processes: digests of file ranges, errors, and clean stops."""

from __future__ import annotations

import hashlib
import os
import random
import signal
from pathlib import Path

import pytest

from edgetrim.fs import hashpool
from edgetrim.fs.hashpool import (
    HashPool,
    HashWorkerError,
    RangeReadError,
    RangeStream,
    StoredFile,
    default_workers,
)


def child_pids() -> set[int]:
    """The process IDs of this process's living children, from /proc."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(7).randbytes(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("workers", [1, 2])
def test_digests_of_many_ranges(data_file: tuple[Path, bytes], workers: int) -> None:
    path, data = data_file
    rng = random.Random(11)
    # Enough jobs that results fill the pipe back to this process before all jobs are sent.
    ranges = [(rng.randrange(len(data)), rng.randrange(70_000)) for _ in range(6000)]
    ranges = [(offset, min(length, len(data) - offset)) for offset, length in ranges]
    before = child_pids()
    with StoredFile.open(str(path)) as file, HashPool([file.fd], workers) as pool:
        layer = pool.hash_layer(file.fd, 0, len(data))
        tickets = [pool.hash_file(file.fd, offset, length) for offset, length in ranges]
        found = [pool.result(ticket) for ticket in reversed(tickets)][::-1]
        assert pool.digest(layer) == hashlib.sha256(data).hexdigest()
    assert [result.hex for result in found] == [
        hashlib.sha256(data[o : o + n]).hexdigest() for o, n in ranges
    ]
    # The first 32 bytes of each range, padded with zero bytes where a range is shorter.
    assert [result.head for result in found] == [
        data[o : o + min(n, 32)].ljust(32, b"\0") for o, n in ranges
    ]
    assert child_pids() == before


def test_range_past_the_end(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    with StoredFile.open(str(path)) as file, HashPool([file.fd], 1) as pool:
        past = pool.hash_file(file.fd, len(data) - 10, 20)
        fine = pool.hash_file(file.fd, 0, 10)
        with pytest.raises(RangeReadError, match="ended before the range"):
            pool.digest(past)
        # The worker goes on with the next job.
        assert pool.digest(fine) == hashlib.sha256(data[:10]).hexdigest()


def test_killed_worker_is_an_error(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    with StoredFile.open(str(path)) as file, HashPool([file.fd], 1) as pool:
        os.kill(pool._workers[0].process.pid, signal.SIGKILL)
        ticket = pool.hash_layer(file.fd, 0, len(data))
        with pytest.raises(HashWorkerError, match="stopped with status -9 before it finished"):
            pool.digest(ticket)


def test_exception_stops_workers_at_once(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    before = child_pids()
    with (
        pytest.raises(KeyError),
        StoredFile.open(str(path)) as file,
        HashPool([file.fd], 2) as pool,
    ):
        for _ in range(200):
            pool.hash_layer(file.fd, 0, len(data))
        pool.flush()
        assert child_pids() - before
        raise KeyError("stop")
    assert child_pids() == before


def test_worker_count_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hashpool.WORKERS_VARIABLE, "0")
    assert default_workers() == 0
    monkeypatch.setenv(hashpool.WORKERS_VARIABLE, "3")
    assert default_workers() == 3
    monkeypatch.setenv(hashpool.WORKERS_VARIABLE, "two")
    with pytest.raises(HashWorkerError, match="EDGETRIM_HASH_WORKERS='two' is not a whole number"):
        default_workers()
    monkeypatch.delenv(hashpool.WORKERS_VARIABLE)
    cpus = len(os.sched_getaffinity(0))
    assert default_workers() == (0 if cpus < 2 else min(cpus, hashpool.MAX_WORKERS))


def test_stored_file_notices_a_write(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    with StoredFile.open(str(path)) as file:
        assert not file.changed()
        with open(path, "r+b") as writer:
            # The same byte written back: the content is as before, but the file was written.
            writer.write(data[:1])
        assert file.changed()


def test_range_stream_reads_and_skips(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    with StoredFile.open(str(path)) as file:
        stream = RangeStream(file.fd, 100, 1000)
        assert stream.read(10) == data[100:110]
        assert stream.skip(500) == 500
        buffer = memoryview(bytearray(1000))
        assert stream.readinto(buffer) == 490
        assert bytes(buffer[:490]) == data[610:1100]
        assert stream.skip(5) == 0
        assert stream.read() == b""
