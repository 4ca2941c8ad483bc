"""Small images built in memory for tests that need exact control over layers and blobs."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer


def layer_tar(files: dict[str, bytes]) -> bytes:
    """Return an uncompressed layer tar holding ``files`` with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzipped(data: bytes) -> bytes:
    """Return ``data`` gzip-compressed with a fixed header, so equal input gives equal bytes."""
    return gzip.compress(data, mtime=0)


def make_layer(
    blob: bytes, uncompressed: bytes, *, opener: Callable[[], BinaryIO] | None = None
) -> Layer:
    """Return a layer whose stored blob is ``blob`` and whose tar is ``uncompressed``."""
    media_type = mediatypes.OCI_LAYER_GZIP if blob != uncompressed else mediatypes.OCI_LAYER
    descriptor = Descriptor(media_type, Digest.of_bytes(blob), len(blob))
    return Layer(
        descriptor,
        Digest.of_bytes(uncompressed),
        opener or (lambda: io.BytesIO(blob)),
        name=f"synthetic layer {descriptor.digest.hex[:12]}",
    )


def make_image(layers: list[Layer], *, os: str = "linux", architecture: str = "amd64") -> Image:
    """Return an image of ``layers`` with a minimal config that lists their diff IDs."""
    config = {
        "architecture": architecture,
        "os": os,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]},
    }
    raw = json.dumps(config, sort_keys=True).encode()
    return Image(ImageConfig(raw), layers, source="synthetic")


def two_layer_image() -> Image:
    """Return an image with one gzip layer and one uncompressed layer."""
    base = layer_tar({"etc/os-release": b"ID=synthetic\n", "bin/tool": b"\x7fELF fake"})
    top = layer_tar({"app/main.py": b"print('hello')\n"})
    return make_image([make_layer(gzipped(base), base), make_layer(top, top)])


class FailingStream:
    """A blob stream that returns ``good`` bytes and then raises, like a disk that fails."""

    def __init__(self, good: bytes):
        self._good = io.BytesIO(good)

    def read(self, size: int = -1) -> bytes:
        data = self._good.read(size)
        if not data:
            raise RuntimeError("simulated read failure in the middle of a blob")
        return data

    def close(self) -> None:
        pass
