"""Layers that the scan reads in place from local files, with worker processes hashing them.

A layer qualifies when its blob is an uncompressed tar lying as it is in a local file (a
``docker save`` archive, an OCI layout) and its digest is its diff ID, so one sha256 checks
both. The scan then parses the layer from the file, and a :class:`~edgetrim.fs.hashpool.HashPool`
hashes the layer and its large files from the same open file. Other layers, and every layer
when there are no workers, take the usual path through :meth:`Layer.read_tar`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import TracebackType

from edgetrim.errors import ImageFormatError
from edgetrim.fs.hashpool import (
    HashPool,
    HashWorkerError,
    RangeDigest,
    RangeReadError,
    RangeStream,
    StoredFile,
    default_workers,
)
from edgetrim.image.compression import Compression, sniff
from edgetrim.image.digest import check_digest
from edgetrim.image.model import Image, Layer

log = logging.getLogger(__name__)

# Enough leading bytes to tell every compression edgetrim reads from a tar.
_SNIFF_BYTES = 8
# Below this many bytes of qualifying layers, starting the workers costs more than they save
# (an estimate: a worker's start takes about 20 ms of CPU time), so the image is read here.
MIN_BYTES = 32 << 20


class StoredPlace:
    """The location of one qualifying layer, and the jobs that hash its files there."""

    def __init__(self, owner: StoredLayers, file: StoredFile, offset: int, size: int, label: str):
        self._owner = owner
        self._file = file
        self._offset = offset
        self._size = size
        self._label = label

    def stream(self) -> RangeStream:
        """Return a stream of the layer tar, read in place."""
        return RangeStream(self._file.fd, self._offset, self._size)

    def hash_file(self, copy_id: int, path: str, offset: int, size: int) -> None:
        """Have a worker hash ``size`` bytes at ``offset`` of the layer tar as copy ``copy_id``."""
        ticket = self._owner.pool.hash_file(self._file.fd, self._offset + offset, size)
        self._owner.file_jobs.append((copy_id, ticket, f"{self._label}: the content of {path}"))


class StoredLayers:
    """The qualifying layers of one image, their open files and the pool that hashes them."""

    def __init__(self, image: Image):
        self._files: dict[str, StoredFile] = {}
        self._places: dict[int, tuple[StoredFile, int, int]] = {}
        self._pool: HashPool | None = None
        self.file_jobs: list[tuple[int, int, str]] = []
        self._layer_jobs: list[tuple[Layer, int]] = []
        workers = default_workers()
        if not workers:
            return
        try:
            for index, layer in enumerate(image.layers):
                place = self._qualify(layer)
                if place is not None:
                    self._places[index] = place
            if sum(size for _, _, size in self._places.values()) < MIN_BYTES:
                self._places.clear()
            if self._places:
                log.debug("hashing with %d worker processes", workers)
                self._pool = HashPool([file.fd for file in self._files.values()], workers)
        except HashWorkerError as exc:
            # The image can still be read in this process, only more slowly.
            log.warning("%s; reading the image in this process", exc)
            self._places.clear()
        except BaseException:
            self._close_files()
            raise

    @property
    def pool(self) -> HashPool:
        assert self._pool is not None
        return self._pool

    def _qualify(self, layer: Layer) -> tuple[StoredFile, int, int] | None:
        stored = layer.stored
        if (
            stored is None
            or layer.opener is None
            or layer.digest != layer.diff_id
            or layer.digest.algorithm != "sha256"
            or stored.size != layer.size
        ):
            return None
        file = self._files.get(stored.path)
        if file is None:
            try:
                file = StoredFile.open(stored.path)
            except OSError:
                return None
            self._files[stored.path] = file
        # A short file or a compressed blob takes the usual path, which reports it as before.
        if file.status[1] < stored.offset + stored.size:
            return None
        if sniff(os.pread(file.fd, _SNIFF_BYTES, stored.offset)) is not Compression.NONE:
            return None
        return file, stored.offset, stored.size

    def start_layer(self, index: int, layer: Layer) -> StoredPlace | None:
        """Queue the digest of layer ``index`` if it qualifies, and return where it lies."""
        found = self._places.get(index)
        if found is None:
            return None
        file, offset, size = found
        self._layer_jobs.append((layer, self.pool.hash_layer(file.fd, offset, size)))
        return StoredPlace(self, file, offset, size, layer.label)

    def file_results(self) -> Iterator[tuple[int, RangeDigest]]:
        """Wait for the files handed to workers: yield each copy id with its digest and head."""
        for copy_id, ticket, subject in self.file_jobs:
            yield copy_id, self._result(ticket, subject)
        self.file_jobs.clear()

    def verify(self) -> None:
        """Check each qualifying layer against its digest, and that no file changed meanwhile."""
        actual = [
            (layer, self._result(ticket, f"{layer.label}: the layer").hex)
            for layer, ticket in self._layer_jobs
        ]
        # A change explains a mismatch, so it is reported first.
        self._check_unchanged()
        for layer, digest in actual:
            check_digest(layer.label, layer.digest, digest)

    def _result(self, ticket: int, subject: str) -> RangeDigest:
        try:
            return self.pool.result(ticket)
        except RangeReadError as exc:
            self._check_unchanged()
            raise ImageFormatError(
                f"{subject} could not be read again ({exc}); "
                "run again when nothing writes to the image"
            ) from None
        except HashWorkerError:
            # A file truncated under a worker's mapping stops the worker with SIGBUS.
            self._check_unchanged()
            raise

    def _check_unchanged(self) -> None:
        for file in self._files.values():
            if file.changed():
                raise ImageFormatError(
                    f"{file.path}: the file changed while edgetrim read it; "
                    "run again when nothing writes to it"
                )

    def __enter__(self) -> StoredLayers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._pool is not None:
                self._pool.close(kill=kind is not None)
        finally:
            self._close_files()

    def _close_files(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
