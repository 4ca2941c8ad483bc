"""The fast layer reader and tarfile give the same entries on every real layer at hand.

The layers come from every image in the shared fixture folder, and from `docker save`
archives of the two bundled examples, built by the test engine. Each layer is read twice
through Layer.read_tar(), which verifies its digests: once by safetar.iter_layer (TarStream)
and once by tarfile alone, hashing every regular file both times.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgetrim.fs import safetar
from edgetrim.fs.hashpool import RangeStream, StoredFile
from edgetrim.fs.safetar import LayerReader, TarMember
from edgetrim.image.model import Layer, Platform
from edgetrim.transports import open_image
from tests.conftest import REPO, docker
from tests.transports.test_fixtures import IMAGE_CASES, Loads

READABLE_FIXTURES = [case for case in IMAGE_CASES if isinstance(case.expected, Loads)]


def entries(read, layer: Layer) -> list:
    """Iterate one layer with ``read`` and return its items, hashing every regular file."""
    items = []
    with layer.read_tar() as stream:
        for item in read(stream, layer_index=0, layer_name=layer.label):
            if isinstance(item, TarMember):
                if item.entry.is_regular:
                    item.read_content()
                items.append(item.entry)
            else:
                items.append(item)
    return items


def assert_layers_agree(layers: list[Layer]) -> int:
    """Compare both readers on each of ``layers``; return the number of items compared."""
    compared = 0
    for layer in layers:
        fast = entries(safetar.iter_layer, layer)
        slow = entries(safetar._iter_layer_with_tarfile, layer)
        assert fast == slow, layer.label
        compared += len(fast)
    return compared


@pytest.mark.parametrize("case", READABLE_FIXTURES, ids=[case.id for case in READABLE_FIXTURES])
def test_fixture_layers_agree(case, fixtures_dir: Path) -> None:
    platform = Platform.parse(case.platform) if case.platform else None
    expected = case.expected
    with open_image(case.reference(fixtures_dir), platform=platform) as image:
        # A layer whose expected count is an error class cannot be read, by either reader.
        readable = [
            layer
            for layer, count in zip(image.layers, expected.entries, strict=True)
            if isinstance(count, int)
        ]
        compared = assert_layers_agree(readable)
    # Each tar member gives one item, except the AUFS metadata that safetar skips.
    assert compared <= sum(count for count in expected.entries if isinstance(count, int))


@pytest.fixture(scope="module")
def example_archives(build_image, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("examples")
    archives = []
    for name in ("python-http", "batch-job"):
        tag = build_image(REPO / "examples" / name, f"edgetrim-test/{name}:latest")
        archive = folder / f"{name}.tar"
        docker("save", "-o", str(archive), tag)
        archives.append(archive)
    return archives


@pytest.mark.docker
def test_example_image_layers_agree(example_archives: list[Path]) -> None:
    for archive in example_archives:
        with open_image(f"docker-archive:{archive}") as image:
            assert assert_layers_agree(image.layers) > 1000, archive.name


@pytest.mark.docker
def test_example_image_offsets_in_place(example_archives: list[Path]) -> None:
    # Read in place, as analyze does with hashing workers: each file's bytes at its offset in
    # the archive are its content, and the skipped ranges leave the entries unchanged.
    archive = example_archives[0]
    with open_image(f"docker-archive:{archive}") as image:
        for layer in image.layers:
            assert layer.stored is not None and layer.stored.path == str(archive)
            expected = entries(safetar.iter_layer, layer)
            found = []
            with StoredFile.open(layer.stored.path) as file:
                stream = RangeStream(file.fd, layer.stored.offset, layer.stored.size)
                for item in LayerReader(stream, layer_index=0, layer_name=layer.label):
                    if isinstance(item, TarMember) and item.entry.is_regular:
                        assert item.offset is not None
                        start = layer.stored.offset + item.offset
                        content = os.pread(file.fd, item.entry.size, start)
                        item.entry.digest = hashlib.sha256(content).hexdigest()
                    found.append(item.entry if isinstance(item, TarMember) else item)
            assert found == expected, layer.label
