"""oci-archive: read and write OCI layouts packed in one tar, and check them against skopeo."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgetrim.errors import (
    DigestMismatchError,
    ImageFormatError,
    ImageNotFoundError,
    ImageWriteError,
    InvalidReferenceError,
)
from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.transports import Transport, open_image, parse_reference, write_image
from tests.transports.synthetic import FailingStream, gzipped, layer_tar, make_image, make_layer

SOURCES = [
    "docker-archive:dive/test-docker-image.tar",
    "docker-archive:dive/test-oci-zstd-image.tar",
    "docker-archive:dive/test-oci-estargz-image.tar",
    "docker-archive:go-containerregistry/sparse_foreign.tar",
    "oci:stereoscope/oci/multiplatform_oci_dir",
]


def fixture_reference(source: str, root: Path) -> str:
    transport, _, rest = source.partition(":")
    return f"{transport}:{root}/{rest}"


def read_layers(image) -> None:
    for layer in image.layers:
        if layer.opener is None:
            continue
        with layer.read_tar() as stream:
            while stream.read(1 << 20):
                pass


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is missing; install the Debian package {command[0]}")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("text", "path", "name", "index"),
    [
        ("oci-archive:/tmp/a.tar", "/tmp/a.tar", None, None),
        ("oci-archive:a.tar:v1.0", "a.tar", "v1.0", None),
        ("oci-archive:a.tar:sample:latest", "a.tar", "sample:latest", None),
        ("oci-archive:a.tar:@1", "a.tar", None, 1),
    ],
)
def test_parse_oci_archive_reference(text: str, path: str, name, index) -> None:
    reference = parse_reference(text)
    assert reference.transport is Transport.OCI_ARCHIVE
    assert reference.path == Path(path)
    assert (reference.name, reference.source_index) == (name, index)


@pytest.mark.parametrize("text", ["oci-archive:", "oci-archive:a.tar:bad ref"])
def test_parse_oci_archive_invalid(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


@pytest.mark.parametrize("source", SOURCES)
def test_oci_archive_roundtrip(source: str, fixtures_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    with open_image(fixture_reference(source, fixtures_dir)) as original:
        digest = write_image(original, f"oci-archive:{dest}:v1")
        with open_image(f"oci-archive:{dest}:v1") as copy:
            assert copy.config.digest == original.config.digest
            assert [layer.diff_id for layer in copy.layers] == [
                layer.diff_id for layer in original.layers
            ]
            assert [layer.digest for layer in copy.layers] == [
                layer.digest for layer in original.layers
            ]
            assert [layer.descriptor.annotations for layer in copy.layers] == [
                layer.descriptor.annotations for layer in original.layers
            ]
            assert copy.names == ["v1"]
            assert copy.manifest_raw is not None
            assert Digest.of_bytes(copy.manifest_raw) == digest
            read_layers(copy)
    with tarfile.open(dest) as archive:
        names = archive.getnames()
        for member in archive.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname) == (0, 0, 0, "")
    assert {"oci-layout", "index.json", "blobs/sha256"} <= set(names)


def test_oci_archive_bytes_are_stable(fixtures_dir: Path, tmp_path: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar") as image:
        first = write_image(image, f"oci-archive:{tmp_path / 'a.tar'}:v1")
        second = write_image(image, f"oci-archive:{tmp_path / 'b.tar'}", tag="v1")
    assert first == second
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_oci_archive_replaces_existing(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    first = make_image([make_layer(layer_tar({"a": b"1"}), layer_tar({"a": b"1"}))])
    second = make_image([make_layer(layer_tar({"b": b"2"}), layer_tar({"b": b"2"}))])
    write_image(first, f"oci-archive:{dest}:one")
    write_image(second, f"oci-archive:{dest}:two")
    with (
        pytest.raises(ImageNotFoundError, match="no image with ref 'one'"),
        open_image(f"oci-archive:{dest}:one"),
    ):
        pass
    with open_image(f"oci-archive:{dest}") as only:
        assert only.config.digest == second.config.digest


def test_oci_archive_selects_by_index_and_platform(fixtures_dir: Path, tmp_path: Path) -> None:
    layout = fixtures_dir / "stereoscope/oci/multiplatform_oci_dir"
    archive = tmp_path / "multi.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=path.relative_to(layout).as_posix(), recursive=False)
    from edgetrim.image.model import Platform

    with open_image(f"oci-archive:{archive}:@0", platform=Platform("linux", "arm64")) as image:
        assert image.config.digest.hex.startswith("3cd6022503ce")
    gzipped_archive = tmp_path / "multi.tar.gz"
    gzipped_archive.write_bytes(gzip.compress(archive.read_bytes()))
    with open_image(f"oci-archive:{gzipped_archive}", platform=Platform("linux", "amd64")) as image:
        assert image.config.digest.hex.startswith("549248a7ac95")


def test_oci_archive_rejects_docker_archive(fixtures_dir: Path) -> None:
    with (
        pytest.raises(ImageFormatError, match="read it with docker-archive:"),
        open_image(f"oci-archive:{fixtures_dir}/dive/test-docker-image.tar"),
    ):
        pass


def test_oci_archive_missing_file(tmp_path: Path) -> None:
    with (
        pytest.raises(ImageNotFoundError, match="check the path of the OCI archive"),
        open_image(f"oci-archive:{tmp_path / 'nope.tar'}"),
    ):
        pass


def test_oci_archive_failed_write_leaves_nothing(tmp_path: Path) -> None:
    top = gzipped(layer_tar({"b": b"b" * 5000}))
    broken = make_layer(top, layer_tar({"b": b"b" * 5000}), opener=lambda: FailingStream(top[:40]))  # type: ignore[arg-type,return-value]
    with pytest.raises(RuntimeError, match="simulated read failure"):
        write_image(make_image([broken]), f"oci-archive:{tmp_path / 'out.tar'}")
    data = layer_tar({"a": b"a" * 5000})
    short = make_layer(data, data, opener=lambda: __import__("io").BytesIO(data[:-512]))
    with pytest.raises(DigestMismatchError):
        write_image(make_image([short]), f"oci-archive:{tmp_path / 'out.tar'}")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImageWriteError, match="is a folder"):
        write_image(make_image([]), f"oci-archive:{tmp_path / 'folder'}")


def test_skopeo_reads_oci_archive(fixtures_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar") as image:
        digest = write_image(image, f"oci-archive:{dest}:v1")
        layer_digests = [str(layer.digest) for layer in image.layers]
    inspect = run_tool("skopeo", "inspect", f"oci-archive:{dest}:v1")
    assert inspect.returncode == 0, inspect.stderr
    report = json.loads(inspect.stdout)
    assert report["Digest"] == str(digest)
    assert report["Layers"] == layer_digests
    copied = run_tool("skopeo", "copy", f"oci-archive:{dest}:v1", f"oci:{tmp_path / 'layout'}:v1")
    assert copied.returncode == 0, copied.stderr


def test_reads_skopeo_oci_archive(fixtures_dir: Path, tmp_path: Path) -> None:
    source = f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar"
    written = run_tool("skopeo", "copy", source, f"oci-archive:{tmp_path / 'sk.tar'}:sk")
    assert written.returncode == 0, written.stderr
    with (
        open_image(source) as original,
        open_image(f"oci-archive:{tmp_path / 'sk.tar'}:sk") as copy,
    ):
        # skopeo rewrites the Docker config as an OCI config, so its digest changes.
        assert copy.config.data["rootfs"] == original.config.data["rootfs"]
        assert [layer.diff_id for layer in copy.layers] == [
            layer.diff_id for layer in original.layers
        ]
        read_layers(copy)
        assert {layer.media_type for layer in copy.layers} == {mediatypes.OCI_LAYER_GZIP}


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=300
    )


def test_copy_cli_with_platform(fixtures_dir: Path, tmp_path: Path) -> None:
    layout = fixtures_dir / "stereoscope/oci/multiplatform_oci_dir"
    dest = tmp_path / "arm.tar"
    result = edgetrim(
        "copy", "--platform", "linux/arm64", f"oci:{layout}", f"oci-archive:{dest}:arm"
    )
    assert result.returncode == 0, result.stderr
    assert "sha256:" in result.stdout
    with open_image(f"oci-archive:{dest}:arm") as image:
        assert image.config.digest.hex.startswith("3cd6022503ce")
    invalid = edgetrim("copy", "--platform", "linux", f"oci:{layout}", f"oci:{tmp_path / 'x'}")
    assert invalid.returncode == 2
    assert "os/arch[/variant]" in invalid.stderr
    assert not (tmp_path / "x").exists()


def test_minimize_cli_platform_not_in_index(fixtures_dir: Path, tmp_path: Path) -> None:
    layout = fixtures_dir / "stereoscope/oci/multiplatform_oci_dir"
    dest = tmp_path / "out"
    result = edgetrim("minimize", "--platform", "linux/s390x", f"oci:{layout}", f"oci:{dest}")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no image for platform linux/s390x" in lines[0]
    assert not dest.exists()
