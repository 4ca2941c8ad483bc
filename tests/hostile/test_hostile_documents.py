"""Hostile or broken image documents: Docker 25+ dual archives, huge, malformed or mistyped
manifests and configs, missing blobs and blobs whose size lies, in every file transport.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from pathlib import Path

import pytest

from edgetrim.errors import (
    DigestMismatchError,
    EdgetrimError,
    ImageFormatError,
    ImageNotFoundError,
)
from edgetrim.fs.tree import FileTree
from edgetrim.transports import open_image, write_image
from tests.fs.layers import build_tar, reg
from tests.hostile.archives import add_bytes, docker_archive, dual_archive, tar_layer

LAYERS = [
    build_tar(reg("etc/motd", b"one\n")),
    build_tar(reg("usr/bin/tool", b"\x7fELF tool", mode=0o755)),
    build_tar(reg("etc/motd", b"two\n")),
]


def motd(reference: str) -> bytes:
    """Return /etc/motd's digest as the merged tree records it, reading every layer."""
    with open_image(reference) as image:
        tree = FileTree.from_image(image)
    entry = tree.get("/etc/motd")
    assert entry is not None
    return entry.digest.encode()


# -- Docker 25+ dual archives -----------------------------------------------------------------


def test_dual_archive_both_views_agree(tmp_path: Path) -> None:
    archive = dual_archive(tmp_path / "dual.tar", LAYERS)
    with open_image(f"docker-archive:{archive}") as image:
        assert image.names == ["hostile/dual:1"]
        assert len(image.layers) == 3
        assert image.config.history[0]["empty_layer"] is True
    with open_image(f"docker-archive:{archive}:hostile/dual:1") as image:
        assert len(image.layers) == 3


@pytest.mark.parametrize(
    "broken",
    [
        {"index_manifests": "null"},
        {"oci_layers": []},
        {"oci_layers": [0, 2, 1]},
    ],
    ids=["index-manifests-null", "oci-manifest-without-layers", "oci-layers-reordered"],
)
def test_dual_archive_broken_oci_view(broken: dict, tmp_path: Path) -> None:
    archive = dual_archive(tmp_path / "dual.tar", LAYERS, **broken)
    reference = f"docker-archive:{archive}"
    with open_image(reference) as image:
        assert image.names == ["hostile/dual:1"]
        assert [str(layer.digest) for layer in image.layers] == [
            str(diff_id) for diff_id in image.config.diff_ids
        ]
    assert motd(reference) == motd(f"docker-archive:{dual_archive(tmp_path / 'ok.tar', LAYERS)}")


@pytest.mark.parametrize(
    "docker_layers", [[], [0, 2, 1], [0, 1]], ids=["none", "reordered", "one-missing"]
)
def test_dual_archive_broken_manifest_json(
    docker_layers: list[int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = dual_archive(tmp_path / "dual.tar", LAYERS, docker_layers=docker_layers)
    with caplog.at_level(logging.WARNING), open_image(f"docker-archive:{archive}") as image:
        assert [layer.digest for layer in image.layers] == image.config.diff_ids
        tree = FileTree.from_image(image)
    assert "reading the OCI layout in index.json instead" in caplog.text
    entry = tree.get("/etc/motd")
    assert entry is not None
    assert entry.size == len(b"two\n")


def test_dual_archive_both_views_broken(tmp_path: Path) -> None:
    archive = dual_archive(
        tmp_path / "dual.tar", LAYERS, index_manifests="null", docker_layers=[2, 1, 0]
    )
    with pytest.raises(ImageFormatError) as caught, open_image(f"docker-archive:{archive}"):
        pass
    message = str(caught.value)
    assert "config records diff ID" in message
    assert "lists no manifests" in message
    assert "\n" not in message


def test_docker_25_fixture(fixtures_dir: Path) -> None:
    with open_image(
        f"docker-archive:{fixtures_dir}/go-containerregistry/hello-world-v25.tar"
    ) as image:
        tree = FileTree.from_image(image)
    assert "/hello" in tree


# -- documents in docker archives ------------------------------------------------------------


def archive_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            add_bytes(archive, name, data)
    return path


@pytest.mark.parametrize(
    ("members", "error", "text"),
    [
        ({"manifest.json": b"[" * 100_000}, ImageFormatError, "not valid JSON"),
        ({"manifest.json": b" " * (9 << 20)}, ImageFormatError, "more than the 8388608 bytes"),
        (
            {
                "manifest.json": b'[{"Config": "c.json", "Layers": []}]',
                "c.json": b" " * (9 << 20),
            },
            ImageFormatError,
            "more than the 8388608 bytes",
        ),
        (
            {"manifest.json": b'[{"Config": "c.json", "Layers": []}]', "c.json": b"[1, 2]"},
            ImageFormatError,
            "image config is not a JSON object",
        ),
        (
            {
                "manifest.json": b'[{"Config": "c.json", "Layers": []}]',
                "c.json": b'{"rootfs": {"diff_ids": "sha256:x"}}',
            },
            ImageFormatError,
            "rootfs.diff_ids",
        ),
        (
            {
                "manifest.json": b'[{"Config": "c.json", "Layers": ["missing.tar"]}]',
                "c.json": json.dumps({"rootfs": {"diff_ids": ["sha256:" + "1" * 64]}}).encode(),
            },
            ImageFormatError,
            "layer file is missing from the archive",
        ),
    ],
    ids=["deep-json", "huge-manifest", "huge-config", "config-list", "bad-diff-ids", "no-blob"],
)
def test_bad_docker_archive_documents(
    members: dict[str, bytes], error: type[EdgetrimError], text: str, tmp_path: Path
) -> None:
    archive = archive_with(tmp_path / "bad.tar", members)
    with pytest.raises(error, match=text) as caught, open_image(f"docker-archive:{archive}"):
        pass
    assert "\n" not in str(caught.value)


# -- documents in OCI layouts and OCI archives -----------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    archive = docker_archive(tmp_path / "good.tar", [tar_layer(tar) for tar in LAYERS])
    with open_image(f"docker-archive:{archive}") as image:
        write_image(image, f"oci:{tmp_path / 'layout'}:v1")
    return tmp_path / "layout"


def manifest_path(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_bytes())
    return layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]


def rewrite_manifest(layout: Path, change) -> None:
    """Change the manifest document and point index.json at the changed blob."""
    old = manifest_path(layout)
    document = change(json.loads(old.read_bytes()))
    raw = json.dumps(document).encode()
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(raw)
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0].update({"digest": f"sha256:{digest}", "size": len(raw)})
    (layout / "index.json").write_text(json.dumps(index))


def set_layer(index: int, **fields):
    def change(document: dict) -> dict:
        document["layers"][index].update(fields)
        return document

    return change


def pack(layout: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=path.relative_to(layout).as_posix(), recursive=False)
    return archive


BROKEN_LAYOUTS = {
    "config-artifact-type": (
        lambda d: {
            **d,
            "config": {**d["config"], "mediaType": "application/vnd.cncf.helm.config.v1+json"},
        },
        ImageFormatError,
        "not a container image config",
    ),
    "layer-unknown-type": (
        set_layer(0, mediaType="application/x-not-a-layer"),
        ImageFormatError,
        "is not a container image layer",
    ),
    "layer-missing-blob": (
        set_layer(1, digest="sha256:" + "5" * 64),
        ImageFormatError,
        "layer blob is missing",
    ),
    "layer-size-negative": (set_layer(0, size=-1), ImageFormatError, "size -1 is negative"),
    "layer-size-string": (set_layer(0, size="12"), ImageFormatError, "must be an integer"),
    "config-size-huge": (
        lambda d: {**d, "config": {**d["config"], "size": 1 << 40}},
        ImageFormatError,
        "descriptor records 1099511627776 bytes",
    ),
    "layers-not-list": (lambda d: {**d, "layers": {}}, ImageFormatError, "must be a list"),
    # index.json still types the entry as an OCI manifest, which must have a config.
    "schema-1": (
        lambda d: {"schemaVersion": 1, "name": "x", "fsLayers": []},
        ImageFormatError,
        "required field 'config' is missing",
    ),
}


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
@pytest.mark.parametrize("case", sorted(BROKEN_LAYOUTS))
def test_broken_layout_documents(case: str, transport: str, layout: Path, tmp_path: Path) -> None:
    change, error, text = BROKEN_LAYOUTS[case]
    rewrite_manifest(layout, change)
    path = layout if transport == "oci" else pack(layout, tmp_path / "layout.tar")
    with pytest.raises(error, match=text) as caught, open_image(f"{transport}:{path}:v1"):
        pass
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
@pytest.mark.parametrize(("delta", "text"), [(-1, "larger than"), (1, "descriptor records")])
def test_layer_size_lies(
    transport: str, delta: int, text: str, layout: Path, tmp_path: Path
) -> None:
    document = json.loads(manifest_path(layout).read_bytes())
    rewrite_manifest(layout, set_layer(1, size=document["layers"][1]["size"] + delta))
    path = layout if transport == "oci" else pack(layout, tmp_path / "layout.tar")
    with (
        open_image(f"{transport}:{path}:v1") as image,
        pytest.raises(DigestMismatchError, match=text),
    ):
        FileTree.from_image(image)


def test_missing_ref_in_oci_archive(layout: Path, tmp_path: Path) -> None:
    archive = pack(layout, tmp_path / "layout.tar")
    with (
        pytest.raises(ImageNotFoundError, match="no image with ref 'v2'"),
        open_image(f"oci-archive:{archive}:v2"),
    ):
        pass


def test_layout_index_escape(layout: Path, tmp_path: Path) -> None:
    """A blob that is a symlink out of the layout is not followed."""
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    blob = manifest_path(layout)
    blob.unlink()
    blob.symlink_to(outside)
    with (
        pytest.raises(ImageFormatError, match="path leads outside"),
        open_image(f"oci:{layout}:v1"),
    ):
        pass
    shutil.rmtree(layout)
