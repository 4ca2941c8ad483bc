"""One conformance check against every reader and writer: docker-archive, oci, oci-archive,
docker-daemon and docker://.

Each source image is written with a writer, read back with the matching reader, and must
keep its config digest, its diff IDs and, entry by entry, the file tree its layers build.
Then the outputs go through the reference tools: ``docker load``, ``skopeo copy`` and
``umoci unpack``, whose unpacked root must hold the same paths as edgetrim's file tree.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetrim.fs.tree import FileTree
from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer
from edgetrim.transports import RegistryOptions, open_image, write_image
from tests.conftest import docker
from tests.fs.layers import sample_layers
from tests.transports.registry_server import Registry

FIXTURE_SOURCES = {
    "dive-docker": "docker-archive:dive/test-docker-image.tar",
    "dive-kaniko-gzip": "docker-archive:dive/test-kaniko-image.tar",
    "dive-oci-zstd": "docker-archive:dive/test-oci-zstd-image.tar",
    "ggcr-whiteout-dir": "docker-archive:go-containerregistry/whiteout_dir.tar",
}
SOURCES = [*FIXTURE_SOURCES, "synthetic-rich"]
WRITERS = ["docker-archive", "oci", "oci-archive", "docker-daemon", "docker"]
# Docker 20.10's docker load cannot read zstd layers, so that pair is skipped.
UNSUPPORTED = {("dive-oci-zstd", "docker-daemon"): "docker load of Docker 20.10 has no zstd"}


def rich_image() -> Image:
    """Layers with devices, a FIFO, xattrs, setuid files, hardlinks, whiteouts, odd names."""
    layers = []
    for tar in sample_layers():
        digest = Digest.of_bytes(tar)
        opener = functools.partial(io.BytesIO, tar)
        descriptor = Descriptor(mediatypes.OCI_LAYER, digest, len(tar))
        layers.append(Layer(descriptor, digest, opener, name=f"rich layer {len(layers)}"))  # type: ignore[arg-type]
    raw = (
        '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/busybox"]},'
        '"rootfs":{"type":"layers","diff_ids":['
        + ",".join(f'"{layer.diff_id}"' for layer in layers)
        + "]}}"
    ).encode()
    return Image(ImageConfig(raw), layers, source="synthetic rich image")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("conformance-registry")) as server:
        yield server


@pytest.fixture(scope="module")
def registry_options(tmp_path_factory: pytest.TempPathFactory) -> RegistryOptions:
    return RegistryOptions(insecure=True, config_dir=tmp_path_factory.mktemp("no-credentials"))


@pytest.fixture
def source(request: pytest.FixtureRequest, fixtures_dir: Path) -> Iterator[Image]:
    name = request.param
    if name == "synthetic-rich":
        yield rich_image()
        return
    transport, _, rest = FIXTURE_SOURCES[name].partition(":")
    with open_image(f"{transport}:{fixtures_dir}/{rest}") as image:
        yield image


def tree_entries(image: Image) -> list:
    return list(FileTree.from_image(image).entries())


def destination(writer: str, tmp_path: Path, registry: Registry | None) -> tuple[str, str]:
    """Return the reference to write and the one to read back."""
    tag = f"conformance/{uuid.uuid4().hex[:12]}:1"
    if writer == "docker-archive":
        return (
            f"docker-archive:{tmp_path / 'out.tar'}:{tag}",
            f"docker-archive:{tmp_path / 'out.tar'}",
        )
    if writer == "oci":
        return f"oci:{tmp_path / 'layout'}:v1", f"oci:{tmp_path / 'layout'}:v1"
    if writer == "oci-archive":
        return f"oci-archive:{tmp_path / 'out.tar'}:v1", f"oci-archive:{tmp_path / 'out.tar'}:v1"
    if writer == "docker-daemon":
        return f"docker-daemon:edgetrim-{tag}", f"docker-daemon:edgetrim-{tag}"
    assert registry is not None
    return f"docker://{registry.host}/{tag}", f"docker://{registry.host}/{tag}"


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("source", SOURCES, indirect=True)
def test_write_read_back(
    source: Image, writer: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source_name = request.node.callspec.params["source"]
    if (source_name, writer) in UNSUPPORTED:
        pytest.skip(UNSUPPORTED[(source_name, writer)])
    registry = None
    options = None
    if writer == "docker-daemon":
        request.getfixturevalue("docker_host")
    if writer == "docker":
        registry = request.getfixturevalue("registry")
        options = request.getfixturevalue("registry_options")
    expected_tree = tree_entries(source)
    write_ref, read_ref = destination(writer, tmp_path, registry)
    try:
        write_image(source, write_ref, registry=options)
        with open_image(read_ref, registry=options) as copy:
            assert copy.config.digest == source.config.digest
            assert [layer.diff_id for layer in copy.layers] == [
                layer.diff_id for layer in source.layers
            ]
            assert tree_entries(copy) == expected_tree
    finally:
        if writer == "docker-daemon":
            docker("rmi", "--force", write_ref.removeprefix("docker-daemon:"), check=False)


# -- reference tools ------------------------------------------------------------------------------


def tool(*command: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is missing; install the Debian package {command[0]}")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def rootfs_paths(root: Path) -> set[str]:
    found = {"/"}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add("/" + os.path.relpath(os.path.join(folder, name), root))
    return found


@pytest.mark.parametrize("writer", ["oci", "oci-archive", "docker-archive", "docker"])
def test_outputs_work_with_skopeo_and_umoci(
    writer: str, fixtures_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    registry = request.getfixturevalue("registry") if writer == "docker" else None
    options = request.getfixturevalue("registry_options") if registry else None
    source = f"docker-archive:{fixtures_dir}/dive/test-docker-image.tar"
    write_ref, _ = destination(writer, tmp_path, registry)
    with open_image(source) as image:
        write_image(image, write_ref, registry=options)
        paths = {entry.path for entry in tree_entries(image)}
    skopeo_ref = write_ref
    if writer == "docker-archive":
        skopeo_ref = write_ref.rsplit(":", 2)[0]
    flags = ["--src-tls-verify=false"] if writer == "docker" else []
    layout = tmp_path / "skopeo-layout"
    copied = tool("skopeo", "copy", *flags, skopeo_ref, f"oci:{layout}:copied")
    assert copied.returncode == 0, copied.stderr
    bundle = tmp_path / "bundle"
    unpacked = tool("umoci", "unpack", "--image", f"{layout}:copied", str(bundle))
    assert unpacked.returncode == 0, unpacked.stderr
    assert rootfs_paths(bundle / "rootfs") == paths


def test_umoci_unpacks_oci_archive_output(fixtures_dir: Path, tmp_path: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-docker-image.tar") as image:
        write_image(image, f"oci-archive:{tmp_path / 'out.tar'}:v1")
        paths = {entry.path for entry in tree_entries(image)}
    layout = tmp_path / "layout"
    with tarfile.open(tmp_path / "out.tar") as archive:
        archive.extractall(layout, filter="data")
    unpacked = tool("umoci", "unpack", "--image", f"{layout}:v1", str(tmp_path / "bundle"))
    assert unpacked.returncode == 0, unpacked.stderr
    assert rootfs_paths(tmp_path / "bundle" / "rootfs") == paths


@pytest.mark.docker
def test_docker_load_reads_docker_archive_output(
    docker_host: str, fixtures_dir: Path, tmp_path: Path
) -> None:
    tag = f"edgetrim-conformance/load:{uuid.uuid4().hex[:12]}"
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar") as image:
        write_image(image, f"docker-archive:{tmp_path / 'out.tar'}:{tag}")
        config_digest = str(image.config.digest)
    try:
        loaded = docker("load", "-i", str(tmp_path / "out.tar"), check=False)
        assert loaded.returncode == 0, loaded.stderr
        assert tag in loaded.stdout
        image_id = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
        assert image_id == config_digest
        listing = docker("run", "--rm", "--network=none", tag, "ls", "/root", check=False)
        assert listing.returncode == 0, listing.stderr
        assert "saved.txt" in listing.stdout
    finally:
        docker("rmi", "--force", tag, check=False)
