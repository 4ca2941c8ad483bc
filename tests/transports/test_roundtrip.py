"""Writing images to docker archives and OCI layouts, and reading them back.

The conformance checks at the end run skopeo and umoci against the written files, so the
output is known to work outside edgetrim too.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from edgetrim.errors import (
    DigestMismatchError,
    ImageFormatError,
    ImageWriteError,
    InvalidReferenceError,
)
from edgetrim.image import mediatypes
from edgetrim.image.model import Image
from edgetrim.transports import open_image, write_image
from tests.transports.synthetic import (
    FailingStream,
    gzipped,
    layer_tar,
    make_image,
    make_layer,
    two_layer_image,
)

SOURCES = [
    "docker-archive:dive/test-docker-image.tar",
    "docker-archive:dive/test-kaniko-image.tar",
    "docker-archive:dive/test-oci-zstd-image.tar",
    "docker-archive:go-containerregistry/hello-world-v25.tar",
    "docker-archive:go-containerregistry/no_manifest.tar",
    "docker-archive:go-containerregistry/foreign.tar",
    "docker-archive:go-containerregistry/test_link.tar:@1",
    "oci:stereoscope/oci/multiplatform_oci_dir",
    "oci:go-containerregistry/layout/test_index:4",
]
OCI_TYPE_FOR = {
    mediatypes.DOCKER_LAYER: mediatypes.OCI_LAYER,
    mediatypes.DOCKER_LAYER_GZIP: mediatypes.OCI_LAYER_GZIP,
    mediatypes.DOCKER_FOREIGN_LAYER: mediatypes.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    mediatypes.OCI_LAYER: mediatypes.OCI_LAYER,
    mediatypes.OCI_LAYER_GZIP: mediatypes.OCI_LAYER_GZIP,
    mediatypes.OCI_LAYER_ZSTD: mediatypes.OCI_LAYER_ZSTD,
}


def fixture_reference(source: str, root: Path) -> str:
    transport, _, rest = source.partition(":")
    return f"{transport}:{root}/{rest}"


def read_all_layers(image: Image) -> None:
    for layer in image.layers:
        with layer.read_tar() as stream:
            while stream.read(1 << 20):
                pass


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_same_image(original: Image, copy: Image) -> None:
    assert copy.config.digest == original.config.digest
    assert [layer.diff_id for layer in copy.layers] == [layer.diff_id for layer in original.layers]
    assert [layer.digest for layer in copy.layers] == [layer.digest for layer in original.layers]


@pytest.mark.parametrize("source", SOURCES)
def test_docker_archive_roundtrip(source: str, fixtures_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    with open_image(fixture_reference(source, fixtures_dir)) as original:
        digest = write_image(original, f"docker-archive:{dest}:roundtrip/test:v1")
        assert digest == original.config.digest
        with open_image(f"docker-archive:{dest}") as copy:
            assert_same_image(original, copy)
            assert copy.names == ["roundtrip/test:v1"]
            # A docker archive records no media types, so only the compression survives.
            for before, after in zip(original.layers, copy.layers, strict=True):
                assert OCI_TYPE_FOR[after.media_type] == OCI_TYPE_FOR[before.media_type]
            if all(layer.opener for layer in original.layers):
                read_all_layers(copy)


@pytest.mark.parametrize("source", SOURCES)
def test_oci_roundtrip(source: str, fixtures_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "layout"
    with open_image(fixture_reference(source, fixtures_dir)) as original:
        digest = write_image(original, f"oci:{dest}:v1")
        with open_image(f"oci:{dest}:v1") as copy:
            assert_same_image(original, copy)
            assert copy.names == ["v1"]
            assert copy.manifest_raw is not None
            assert hashlib.sha256(copy.manifest_raw).hexdigest() == digest.hex
            for before, after in zip(original.layers, copy.layers, strict=True):
                assert after.media_type == OCI_TYPE_FOR[before.media_type]
            read_all_layers(copy)
    manifest = json.loads(copy.manifest_raw)
    assert manifest["config"]["mediaType"] == mediatypes.OCI_CONFIG
    assert manifest["mediaType"] == mediatypes.OCI_MANIFEST
    assert json.loads((dest / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}


def test_foreign_layer_without_blob_written_to_oci(fixtures_dir: Path, tmp_path: Path) -> None:
    source = fixtures_dir / "go-containerregistry/sparse_foreign.tar"
    with open_image(f"docker-archive:{source}") as original:
        write_image(original, f"oci:{tmp_path / 'layout'}:v1")
        with pytest.raises(ImageFormatError, match="foreign layer"):
            write_image(original, f"docker-archive:{tmp_path / 'out.tar'}")
    assert not (tmp_path / "out.tar").exists()
    with open_image(f"oci:{tmp_path / 'layout'}:v1") as copy:
        foreign = copy.layers[1]
        assert foreign.opener is None
        assert foreign.media_type == mediatypes.OCI_LAYER_NONDISTRIBUTABLE_GZIP
        assert foreign.descriptor.urls == ("example.com",)


def test_docker_archive_is_byte_identical(fixtures_dir: Path, tmp_path: Path) -> None:
    reference = f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar"
    with open_image(reference) as image:
        write_image(image, f"docker-archive:{tmp_path / 'a.tar'}", tag="same/image:1")
        write_image(image, f"docker-archive:{tmp_path / 'b.tar'}:same/image:1")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as archive:
        for member in archive.getmembers():
            assert (member.mtime, member.uid, member.gid) == (0, 0, 0)
            assert (member.uname, member.gname) == ("", "")
            assert member.mode == (0o755 if member.isdir() else 0o644)


def test_oci_layout_is_byte_identical(fixtures_dir: Path, tmp_path: Path) -> None:
    reference = f"docker-archive:{fixtures_dir}/dive/test-docker-image.tar"
    with open_image(reference) as image:
        first = write_image(image, f"oci:{tmp_path / 'a'}:v1")
        second = write_image(image, f"oci:{tmp_path / 'b'}", tag="v1")
    assert first == second
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_docker_archive_layout(tmp_path: Path) -> None:
    image = two_layer_image()
    write_image(image, f"docker-archive:{tmp_path / 'out.tar'}:app:1")
    with tarfile.open(tmp_path / "out.tar") as archive:
        names = archive.getnames()
        manifest_file = archive.extractfile("manifest.json")
        repositories_file = archive.extractfile("repositories")
        assert manifest_file is not None
        assert repositories_file is not None
        manifest = json.loads(manifest_file.read())
        repositories = json.loads(repositories_file.read())
    config_name = f"{image.config.digest.hex}.json"
    layer_names = [f"{layer.diff_id.hex}/layer.tar" for layer in image.layers]
    assert manifest == [{"Config": config_name, "Layers": layer_names, "RepoTags": ["app:1"]}]
    assert repositories == {"app": {"1": image.layers[-1].diff_id.hex}}
    assert set(layer_names) | {config_name, "manifest.json", "repositories"} <= set(names)


def test_oci_truncated_blob_raises(tmp_path: Path) -> None:
    image = two_layer_image()
    write_image(image, f"oci:{tmp_path}/layout:v1")
    blob = tmp_path / "layout" / "blobs" / "sha256" / image.layers[0].digest.hex
    blob.write_bytes(blob.read_bytes()[:-7])
    with (
        open_image(f"oci:{tmp_path}/layout:v1") as copy,
        pytest.raises(DigestMismatchError) as caught,
    ):
        read_all_layers(copy)
    assert image.layers[0].digest.hex in str(caught.value)
    assert "descriptor records" in str(caught.value)


def test_oci_flipped_byte_raises(tmp_path: Path) -> None:
    image = two_layer_image()
    write_image(image, f"oci:{tmp_path}/layout:v1")
    blob = tmp_path / "layout" / "blobs" / "sha256" / image.layers[1].digest.hex
    data = bytearray(blob.read_bytes())
    data[600] ^= 0x01
    blob.write_bytes(bytes(data))
    with open_image(f"oci:{tmp_path}/layout:v1") as copy:
        read_layers = copy.layers[0]
        with read_layers.read_tar() as stream:
            stream.read()
        with pytest.raises(DigestMismatchError) as caught:
            read_all_layers(copy)
    assert image.layers[1].digest.hex in str(caught.value)


def test_oci_flipped_config_raises_on_open(tmp_path: Path) -> None:
    image = two_layer_image()
    write_image(image, f"oci:{tmp_path}/layout:v1")
    blob = tmp_path / "layout" / "blobs" / "sha256" / image.config.digest.hex
    blob.write_bytes(blob.read_bytes().replace(b"/bin/sh", b"/bin/sH"))
    with pytest.raises(DigestMismatchError) as caught, open_image(f"oci:{tmp_path}/layout:v1"):
        pass
    assert image.config.digest.hex in str(caught.value)


def test_docker_archive_flipped_byte_raises(fixtures_dir: Path, tmp_path: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-docker-image.tar") as image:
        write_image(image, f"docker-archive:{tmp_path / 'out.tar'}")
        member_name = f"{image.layers[1].diff_id.hex}/layer.tar"
    with tarfile.open(tmp_path / "out.tar") as archive:
        offset = archive.getmember(member_name).offset_data
    with open(tmp_path / "out.tar", "r+b") as stream:
        stream.seek(offset + 600)
        byte = stream.read(1)
        stream.seek(offset + 600)
        stream.write(bytes([byte[0] ^ 0x01]))
    with (
        open_image(f"docker-archive:{tmp_path / 'out.tar'}") as copy,
        pytest.raises(DigestMismatchError) as caught,
    ):
        read_all_layers(copy)
    assert member_name in str(caught.value)


def failing_image() -> Image:
    """An image whose second layer's blob read fails halfway through."""
    base = layer_tar({"a": b"a" * 5000})
    top = gzipped(layer_tar({"b": b"b" * 5000}))
    broken = make_layer(
        top, layer_tar({"b": b"b" * 5000}), opener=lambda: cast(BinaryIO, FailingStream(top[:40]))
    )
    return make_image([make_layer(base, base), broken])


def short_blob_image() -> Image:
    """An image whose layer blob is shorter than its descriptor records."""
    data = layer_tar({"a": b"a" * 5000})
    return make_image([make_layer(data, data, opener=lambda: io.BytesIO(data[:-512]))])


@pytest.mark.parametrize("transport", ["docker-archive", "oci"])
def test_failed_write_leaves_nothing(transport: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(RuntimeError, match="simulated read failure"):
        write_image(failing_image(), f"{transport}:{dest}")
    with pytest.raises(DigestMismatchError, match="descriptor records"):
        write_image(short_blob_image(), f"{transport}:{dest}")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_layout(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_image(two_layer_image(), f"oci:{layout}:good")
    index_before = (layout / "index.json").read_bytes()
    with pytest.raises(RuntimeError):
        write_image(failing_image(), f"oci:{layout}:good")
    assert (layout / "index.json").read_bytes() == index_before
    assert [p.name for p in layout.iterdir() if p.name.startswith(".")] == []
    with open_image(f"oci:{layout}:good") as image:
        read_all_layers(image)


def test_write_keeps_other_refs(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    first = two_layer_image()
    second = make_image([make_layer(layer_tar({"x": b"x"}), layer_tar({"x": b"x"}))])
    write_image(first, f"oci:{layout}:a")
    write_image(second, f"oci:{layout}:b")
    write_image(second, f"oci:{layout}:a")
    index = json.loads((layout / "index.json").read_bytes())
    refs = [
        entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index["manifests"]
    ]
    assert refs == ["a", "b"]
    for ref in ("a", "b"):
        with open_image(f"oci:{layout}:{ref}") as image:
            assert image.config.digest == second.config.digest
    # Blobs of the replaced manifest stay, because another ref could still use them.
    assert (layout / "blobs" / "sha256" / first.config.digest.hex).is_file()


def test_write_into_fixture_layout_copy(fixtures_dir: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(fixtures_dir / "stereoscope/oci/valid_oci_dir", layout)
    original = json.loads((layout / "index.json").read_bytes())
    write_image(two_layer_image(), f"oci:{layout}:new")
    index = json.loads((layout / "index.json").read_bytes())
    assert index["manifests"][:2] == original["manifests"]
    assert index["manifests"][2]["annotations"] == {"org.opencontainers.image.ref.name": "new"}
    for ref in ("latest", "1.0", "new"):
        with open_image(f"oci:{layout}:{ref}") as image:
            read_all_layers(image)


def test_write_rejects_bad_destinations(tmp_path: Path) -> None:
    image = two_layer_image()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ImageWriteError, match="not an OCI layout"):
        write_image(image, f"oci:{tmp_path / 'notes'}")
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(image, f"docker-archive:{tmp_path / 'missing' / 'out.tar'}")
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(image, f"oci:{tmp_path / 'missing' / 'layout'}")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("reference", "tag", "reason"),
    [
        ("docker-archive:/tmp/x.tar:a:1", "b:2", "pass only one"),
        ("docker-archive:/tmp/x.tar", "Bad Name", "invalid tag"),
        ("oci:/tmp/layout:a", "b", "pass only one"),
        ("docker-archive:/tmp/x.tar:@0", None, "@INDEX selects an image to read"),
        ("docker-daemon:sha256:" + "ab" * 32, None, "not an image ID"),
    ],
)
def test_write_rejects_bad_names(reference: str, tag: str | None, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match=reason):
        write_image(two_layer_image(), reference, tag=tag)


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed; install the Debian package {command[0]}")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_skopeo_accepts_oci_output(fixtures_dir: Path, tmp_path: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar") as image:
        digest = write_image(image, f"oci:{tmp_path / 'layout'}:v1")
        layer_digests = [str(layer.digest) for layer in image.layers]
    result = run_tool("skopeo", "inspect", f"oci:{tmp_path / 'layout'}:v1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["Digest"] == str(digest)
    assert report["Layers"] == layer_digests


def test_skopeo_accepts_docker_archive_output(fixtures_dir: Path, tmp_path: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar") as image:
        write_image(image, f"docker-archive:{tmp_path / 'out.tar'}:edgetrim/check:1")
        layer_count = len(image.layers)
    result = run_tool("skopeo", "inspect", f"docker-archive:{tmp_path / 'out.tar'}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["Layers"]) == layer_count
    assert report["Os"] == "linux"


def test_umoci_unpacks_oci_output(fixtures_dir: Path, tmp_path: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-docker-image.tar") as image:
        write_image(image, f"oci:{tmp_path / 'layout'}:v1")
    bundle = tmp_path / "bundle"
    result = run_tool("umoci", "unpack", "--image", f"{tmp_path / 'layout'}:v1", str(bundle))
    assert result.returncode == 0, result.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "somefile.txt").is_file()
    assert (rootfs / "bin" / "busybox").is_file()
    # Layer 10 whites out /root/example, which earlier layers filled.
    assert not (rootfs / "root" / "example").exists()
    assert (rootfs / "root" / "saved.txt").is_file()


def test_corrupt_stored_blob_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = two_layer_image()
    layout = tmp_path / "layout"
    write_image(image, f"oci:{layout}:v1")
    blob = layout / "blobs" / "sha256" / image.layers[0].digest.hex
    good = blob.read_bytes()
    blob.write_bytes(good[:-1] + bytes([good[-1] ^ 0x01]))
    write_image(image, f"oci:{layout}:v1")
    assert blob.read_bytes() == good
    assert "replacing corrupt blob" in caplog.text
    with open_image(f"oci:{layout}:v1") as copy:
        read_all_layers(copy)
