"""How the Docker engine stores layers, measured, and the device-set figures checked against it.

overlay2 keeps one unpacked directory per chain ID under image/overlay2/layerdb/sha256/<chain
ID>/, whose cache-id names the folder under overlay2/ with the layer's files in diff/. The
test loads three images built from fresh random content:

    A = base1 + top        B = base2 + top        C = base1 + top2

If the engine stored a layer once per diff ID, `top` would be unpacked once. It is unpacked
twice, once on each base, while base1 is unpacked once for A and C.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from edgetrim.analyze import analyze_device_set, analyze_image, chain_ids
from edgetrim.transports import write_image
from tests.analyze.synthetic import file, layer_tar, make_image
from tests.conftest import docker

pytestmark = pytest.mark.docker

DOCKER_ROOT = Path("/var/lib/edgetrim-docker")
LAYERDB = DOCKER_ROOT / "image" / "overlay2" / "layerdb" / "sha256"
KIB = 1024
MIB = 1024 * 1024


def unpacked_bytes(chain_id: str) -> int:
    """Sum the sizes of the regular files the engine unpacked for one chain ID."""
    cache_id = (LAYERDB / chain_id.removeprefix("sha256:") / "cache-id").read_text().strip()
    total = 0
    for folder, _, names in os.walk(DOCKER_ROOT / "overlay2" / cache_id / "diff"):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


@pytest.fixture
def loaded_images(docker_host, tmp_path):
    if not LAYERDB.is_dir():
        pytest.fail(
            f"{LAYERDB} is missing: the engine from scripts/start-docker.sh uses overlay2 there"
        )
    tag = secrets.token_hex(4)
    base1 = layer_tar(file("base1.txt", secrets.token_bytes(KIB)))
    base2 = layer_tar(file("base2.txt", secrets.token_bytes(KIB)))
    top = layer_tar(file("top.bin", secrets.token_bytes(MIB)))
    top2 = layer_tar(file("top2.bin", secrets.token_bytes(MIB)))
    images = {
        "a": make_image(base1, top),
        "b": make_image(base2, top),
        "c": make_image(base1, top2),
    }
    names = []
    for key, image in images.items():
        archive = tmp_path / f"{key}.tar"
        name = f"edgetrim-test/device-{key}:{tag}"
        write_image(image, f"docker-archive:{archive}", tag=name)
        docker("load", "-i", str(archive))
        names.append(name)
    yield images
    docker("rmi", *names, check=False)


def test_engine_stores_a_layer_once_per_chain_id(loaded_images):
    chains = {key: chain_ids(image.config.diff_ids) for key, image in loaded_images.items()}
    a, b, c = chains["a"], chains["b"], chains["c"]
    # The same top layer has one diff ID but two chain IDs, each with its own unpacked copy.
    assert loaded_images["a"].config.diff_ids[1] == loaded_images["b"].config.diff_ids[1]
    assert a[1] != b[1]
    for chain in {*a, *b, *c}:
        assert (LAYERDB / chain.removeprefix("sha256:")).is_dir(), chain
    assert unpacked_bytes(a[1]) == MIB
    assert unpacked_bytes(b[1]) == MIB
    # A and C share base1: one chain ID, one unpacked folder.
    assert a[0] == c[0]
    unpacked = sum(unpacked_bytes(chain) for chain in {*a, *b, *c})
    assert unpacked == 2 * KIB + 3 * MIB


def test_device_set_matches_the_engine(loaded_images):
    analyses = [analyze_image(image, source=key) for key, image in loaded_images.items()]
    device = analyze_device_set(analyses)
    engine_bytes = sum(
        unpacked_bytes(chain)
        for chain in {
            c for image in loaded_images.values() for c in chain_ids(image.config.diff_ids)
        }
    )
    assert device.device_bytes == engine_bytes == 2 * KIB + 3 * MIB
    assert device.total_bytes == 3 * (KIB + MIB)
    assert (device.layers, device.unique_layers) == (6, 5)
    # top.bin is identical in A and B, base1.txt in A and C.
    assert device.identical_files == 2
    assert device.identical_bytes == MIB + KIB
    assert device.lower_bound_bytes == 2 * KIB + 2 * MIB
    assert device.saving_bytes == MIB
