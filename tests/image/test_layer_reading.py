"""Reading layer blobs: one hash for an uncompressed blob, readinto without copies, and checks.

An uncompressed layer blob whose digest is its diff ID, as ``docker save`` writes it, is
hashed once. Every other layer is hashed as stored and as a tar. Either way a corrupt,
truncated or padded blob raises DigestMismatchError naming the layer.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
import zstandard

from edgetrim.errors import DigestMismatchError, ImageFormatError
from edgetrim.image import compression
from edgetrim.image.digest import Digest, VerifyingReader
from tests.fs.layers import build_tar, image_from_blobs, make_image, reg

TAR = build_tar(reg("etc/hostname", b"edge\n"), reg("big", bytes(range(256)) * 3000))


class ReadOnly:
    """A stream with ``read`` and no ``readinto``, as a network download may be."""

    def __init__(self, data: bytes):
        self._buffer = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(min(size, 1000) if size >= 0 else size)


def read_tar(layer) -> bytes:
    with layer.read_tar() as stream:
        return stream.read()


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Digest]:
    hashed: list[Digest] = []
    original = Digest.new_hash

    def new_hash(self: Digest):
        hashed.append(self)
        return original(self)

    monkeypatch.setattr(Digest, "new_hash", new_hash)
    return hashed


def test_uncompressed_layer_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    image = make_image(tmp_path, TAR)
    hashed = count_hashes(monkeypatch)
    assert read_tar(image.layers[0]) == TAR
    assert hashed == [image.layers[0].digest]


def test_gzip_layer_hashed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    image = make_image(tmp_path, TAR, gzipped=True)
    layer = image.layers[0]
    hashed = count_hashes(monkeypatch)
    assert read_tar(layer) == TAR
    assert hashed == [layer.digest, layer.diff_id]


def test_uncompressed_blob_with_other_diff_id_rejected(tmp_path: Path) -> None:
    # An uncompressed blob whose diff ID differs from its digest is checked against both.
    image = image_from_blobs(tmp_path, [(TAR, TAR + bytes(512), "application/x-tar")])
    with pytest.raises(DigestMismatchError, match=r"layer 0 \(uncompressed\)"):
        read_tar(image.layers[0])


@pytest.mark.parametrize("gzipped", [False, True])
def test_corrupt_blob_names_layer(tmp_path: Path, gzipped: bool) -> None:
    image = make_image(tmp_path, TAR, gzipped=gzipped)
    layer = image.layers[0]
    path = tmp_path / layer.digest.hex
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    # A flipped byte in gzip data may break the deflate stream before the digest is known.
    expected = (DigestMismatchError, ImageFormatError) if gzipped else DigestMismatchError
    with pytest.raises(expected) as caught:
        read_tar(layer)
    assert "layer 0" in str(caught.value)


def test_padded_uncompressed_blob_rejected(tmp_path: Path) -> None:
    image = make_image(tmp_path, TAR)
    path = tmp_path / image.layers[0].digest.hex
    path.write_bytes(TAR + b"trailing")
    with pytest.raises(DigestMismatchError, match="layer 0"):
        read_tar(image.layers[0])


@pytest.mark.parametrize("source", [io.BytesIO, ReadOnly])
def test_verifying_reader_readinto(source) -> None:
    data = bytes(range(256)) * 100
    reader = VerifyingReader(source(data), Digest.of_bytes(data), name="blob", size=len(data))
    buffer = bytearray(4096)
    out = bytearray()
    while count := reader.readinto(memoryview(buffer)):
        out += buffer[:count]
    assert out == data
    assert reader.readinto(memoryview(bytearray(0))) == 0


@pytest.mark.parametrize("size", [100, 101 * 256])
def test_verifying_reader_size_mismatch(size: int) -> None:
    data = bytes(range(256)) * 100
    reader = VerifyingReader(io.BytesIO(data), Digest.of_bytes(data), name="blob x", size=size)
    with pytest.raises(DigestMismatchError, match="blob x"):
        reader.read()


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (TAR, compression.Compression.NONE),
        (gzip.compress(TAR), compression.Compression.GZIP),
        (zstandard.ZstdCompressor().compress(TAR), compression.Compression.ZSTD),
    ],
)
def test_open_decompressed_readinto(blob: bytes, kind: compression.Compression) -> None:
    stream, found = compression.open_decompressed(ReadOnly(blob), name="blob")  # type: ignore[arg-type]
    assert found is kind
    buffer = memoryview(bytearray(3))
    out = bytearray()
    while count := stream.readinto(buffer):  # type: ignore[attr-defined]
        out += buffer[:count]
    assert out == TAR
