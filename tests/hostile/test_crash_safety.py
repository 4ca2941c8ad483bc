"""Kill ``edgetrim copy`` with SIGKILL while it writes a large image, and check the destination.

The source is a docker archive of three layers of random data, 96 MiB in all, made by the
test. For each writer, one complete copy measures how many bytes the output takes. Then
copies are killed once their partial output on disk (or in the registry's storage) reaches
10%, 50% and 90% of that. Kills by progress rather than by time land mid-write however busy
the machine is. After a kill the destination must be absent. An OCI layout that existed
before must keep its index.json byte for byte, with its old ref readable by edgetrim and
skopeo. A registry must not have the tag. A killed process cannot delete its temporary
files, so hidden ``.NAME.*.tmp`` files may remain beside the destination (or, for an existing
layout, in its blobs folder); they are never the destination.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from edgetrim.transports import RegistryOptions, open_image, write_image
from tests.conftest import docker
from tests.hostile.archives import add_bytes
from tests.transports.registry_server import Registry
from tests.transports.synthetic import two_layer_image

KILL_FRACTIONS = (0.1, 0.5, 0.9)


LAYER_SIZES = (64 << 20, 24 << 20, 8 << 20)


def random_layer(folder: Path, index: int, size: int) -> tuple[Path, str]:
    """Write a layer tar with one file of ``size`` random bytes; return it and its diff ID."""
    content = folder / f"content-{index}"
    with open(content, "wb") as out:
        for _ in range(size >> 20):
            out.write(os.urandom(1 << 20))
    layer = folder / f"layer-{index}.tar"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(content, arcname=f"data/blob-{index}.bin")
    content.unlink()
    digest = hashlib.sha256()
    with open(layer, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return layer, f"sha256:{digest.hexdigest()}"


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A docker archive of LAYER_SIZES random bytes, and its config digest."""
    folder = tmp_path_factory.mktemp("big")
    layers = [random_layer(folder, i, size) for i, size in enumerate(LAYER_SIZES)]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": ["edgetrim-crash/big:1"],
            "Layers": [f"{i}/layer.tar" for i in range(len(layers))],
        }
    ]
    archive = folder / "big.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, config_name, config)
        for index, (layer, _) in enumerate(layers):
            tar.add(layer, arcname=f"{index}/layer.tar")
            layer.unlink()
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    return archive, "sha256:" + hashlib.sha256(config).hexdigest()


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``, hidden temporary files included."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def start_copy(source: str, dest: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgetrim", "copy", source, dest],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "EDGETRIM_INSECURE": "1"},
    )


def full_copy(source: str, dest: str) -> None:
    process = start_copy(source, dest)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()


def kill_at(source: str, dest: str, watched: Path, threshold: int) -> bool:
    """Start a copy and SIGKILL it once ``watched`` has grown by ``threshold`` bytes.

    Returns True if the copy was still running when it was killed.
    """
    baseline = folder_bytes(watched)
    process = start_copy(source, dest)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if folder_bytes(watched) - baseline >= threshold:
            break
        time.sleep(0.005)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return running


def thresholds(total: int) -> list[int]:
    return [int(total * fraction) for fraction in KILL_FRACTIONS]


def visible(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def check_file_dest(path: Path, reference: str, config_digest: str) -> None:
    """The destination is absent, or a complete image."""
    if path.exists():
        with open_image(reference) as image:
            assert str(image.config.digest) == config_digest


@pytest.mark.parametrize("writer", ["docker-archive", "oci-archive", "oci"])
def test_killed_write_leaves_no_partial_file(
    writer: str, big_archive: tuple[Path, str], tmp_path: Path
) -> None:
    archive, config_digest = big_archive
    source = f"docker-archive:{archive}"
    name = "out" if writer == "oci" else "out.tar"
    full = tmp_path / "full"
    full.mkdir()
    full_copy(source, f"{writer}:{full / name}")
    check_file_dest(full / name, f"{writer}:{full / name}", config_digest)
    mid_write = 0
    for point, threshold in enumerate(thresholds(folder_bytes(full))):
        folder = tmp_path / f"killed-{point}"
        folder.mkdir()
        dest = folder / name
        assert kill_at(source, f"{writer}:{dest}", folder, threshold)
        assert visible(folder) == []
        check_file_dest(dest, f"{writer}:{dest}", config_digest)
        # A leftover temporary file shows that the kill landed in the middle of the write.
        mid_write += any(entry.startswith(f".{name}.") for entry in os.listdir(folder))
    assert mid_write >= 3


def test_killed_write_keeps_existing_layout(big_archive: tuple[Path, str], tmp_path: Path) -> None:
    archive, config_digest = big_archive
    source = f"docker-archive:{archive}"
    layout = tmp_path / "layout"
    old = two_layer_image()
    write_image(old, f"oci:{layout}:old")
    index_before = (layout / "index.json").read_bytes()
    full_copy(source, f"oci:{tmp_path / 'full'}:new")
    for threshold in thresholds(folder_bytes(tmp_path / "full")):
        # Blobs that an earlier round stored whole stay, so each round writes only the rest.
        assert kill_at(source, f"oci:{layout}:new", layout, threshold // 2)
        assert (layout / "index.json").read_bytes() == index_before
        with open_image(f"oci:{layout}:old") as image:
            assert image.config.digest == old.config.digest
        if shutil.which("skopeo"):
            inspect = subprocess.run(
                ["skopeo", "inspect", f"oci:{layout}:old"], capture_output=True, text=True
            )
            assert inspect.returncode == 0, inspect.stderr
    full_copy(source, f"oci:{layout}:new")
    with open_image(f"oci:{layout}:new") as image:
        assert str(image.config.digest) == config_digest


def test_killed_push_leaves_no_tag(big_archive: tuple[Path, str], tmp_path: Path) -> None:
    """Each kill pushes into a new registry, because a registry keeps the blobs it has."""
    archive, config_digest = big_archive
    source = f"docker-archive:{archive}"
    with Registry(tmp_path / "timing") as registry:
        full_copy(source, f"docker://{registry.host}/crash/app:1")
        total = folder_bytes(registry.folder / "storage")
    points = thresholds(total)
    for point, threshold in enumerate(points):
        with Registry(tmp_path / f"killed-{point}") as registry:
            reference = f"docker://{registry.host}/crash/app:1"
            assert kill_at(source, reference, registry.folder / "storage", threshold)
            answer = httpx.get(f"http://{registry.host}/v2/crash/app/manifests/1")
            assert answer.status_code == 404, answer.text
            if point == len(points) - 1:
                # The next push completes, whatever the killed one left behind.
                full_copy(source, reference)
                options = RegistryOptions(insecure=True, config_dir=tmp_path)
                with open_image(reference, registry=options) as image:
                    assert str(image.config.digest) == config_digest


@pytest.mark.docker
def test_killed_daemon_load_leaves_no_tag(docker_host: str, big_archive: tuple[Path, str]) -> None:
    """The engine's progress is not visible on disk, so these kills are by time."""
    archive, config_digest = big_archive
    source = f"docker-archive:{archive}"
    tag = f"edgetrim-crash/app:{uuid.uuid4().hex[:10]}"
    try:
        started = time.monotonic()
        full_copy(source, f"docker-daemon:{tag}")
        duration = time.monotonic() - started
        docker("rmi", "--force", tag, check=False)
        for fraction in KILL_FRACTIONS[1:]:
            process = start_copy(source, f"docker-daemon:{tag}")
            time.sleep(duration * fraction)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=60)
            inspect = docker("image", "inspect", "--format", "{{.Id}}", tag, check=False)
            if inspect.returncode == 0:
                # The engine had the whole archive before the kill and finished the load.
                assert inspect.stdout.strip() == config_digest
                docker("rmi", "--force", tag, check=False)
    finally:
        docker("rmi", "--force", tag, check=False)
