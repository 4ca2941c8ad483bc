"""Fuzz layer tars through safetar, FileTree and unpack.

The only exceptions allowed are edgetrim's documented ones (EdgetrimError and subclasses),
and nothing may appear outside the destination folder.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetrim.errors import EdgetrimError
from edgetrim.fs.safetar import TarMember, iter_layer
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import unpack
from tests.fs.layers import image_from_blobs, make_image, sample_layers
from tests.fuzz.strategies import compress, layer_tars, mutated

# Hypothesis warns when it prints a large example, which pytest's settings make an error.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
SEED_LAYERS = sample_layers()


def read_members(tar: bytes) -> None:
    for item in iter_layer(io.BytesIO(tar), layer_index=0, layer_name="fuzz layer"):
        if isinstance(item, TarMember) and item.entry.is_regular:
            item.read_content()


def unpack_layers(tars: list[bytes], kind: str) -> None:
    """Build an image of ``tars``, unpack it, and check that nothing escaped the root."""
    with tempfile.TemporaryDirectory(prefix="edgetrim-fuzz-") as temp:
        root = Path(temp)
        outside = root / "outside"
        outside.mkdir()
        (outside / "sentinel").write_bytes(b"untouched")
        image = make_image(root / "blobs", *tars, gzipped=kind == "gzip")
        dest = root / "rootfs"
        try:
            unpack(image, FileTree.from_image(image), dest)
        except EdgetrimError:
            assert not dest.exists()
        assert os.listdir(outside) == ["sentinel"]
        assert (outside / "sentinel").read_bytes() == b"untouched"
        assert sorted(os.listdir(root)) in (
            ["blobs", "outside"],
            ["blobs", "outside", "rootfs"],
        )


@given(layer_tars())
def test_generated_members(tar: bytes) -> None:
    with contextlib.suppress(EdgetrimError):
        read_members(tar)


@given(st.sampled_from(SEED_LAYERS).flatmap(mutated))
def test_mutated_layers(tar: bytes) -> None:
    with contextlib.suppress(EdgetrimError):
        read_members(tar)


@given(st.lists(layer_tars(), min_size=1, max_size=3), st.sampled_from(["none", "gzip"]))
def test_generated_images_unpack_inside(tars: list[bytes], kind: str) -> None:
    unpack_layers(tars, kind)


MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


@st.composite
def corrupt_blobs(draw: st.DrawFn) -> tuple[bytes, bytes, str]:
    """A compressed seed layer with some bytes changed, and the tar it should hold."""
    tar = draw(st.sampled_from(SEED_LAYERS))
    kind = draw(st.sampled_from(sorted(MEDIA_TYPES)))
    return draw(mutated(compress(tar, kind))), tar, MEDIA_TYPES[kind]


@given(corrupt_blobs())
def test_corrupt_compressed_blobs(blob: tuple[bytes, bytes, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="edgetrim-fuzz-") as temp:
        image = image_from_blobs(Path(temp), [blob])
        with contextlib.suppress(EdgetrimError):
            FileTree.from_image(image)
