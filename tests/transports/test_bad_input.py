"""Malformed and hostile archives and layouts built in the test: each raises one clear error."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from edgetrim.errors import EdgetrimError, ImageFormatError
from edgetrim.transports import open_image
from tests.transports.synthetic import layer_tar

LAYER = layer_tar({"hello.txt": b"hello\n"})
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
CONFIG = json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [LAYER_DIGEST]}})


def write_tar(path: Path, members: dict[str, bytes | str]) -> Path:
    """Write a tar of ``members``; a str value makes the member a symlink to that target."""
    with tarfile.open(path, "w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return path


def docker_archive(
    path: Path, manifest: object, extra: dict[str, bytes | str] | None = None
) -> Path:
    """Write a one-layer docker archive with ``manifest``; ``extra`` adds or replaces members."""
    members: dict[str, bytes | str] = {"manifest.json": json.dumps(manifest).encode()}
    members.update({"config.json": CONFIG.encode(), "layer/layer.tar": LAYER})
    members.update(extra or {})
    return write_tar(path, members)


def good_entry(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "Config": "config.json",
        "RepoTags": ["x:1"],
        "Layers": ["layer/layer.tar"],
    }
    entry.update(changes)
    return entry


def assert_raises_one_line(reference: str, error: type[EdgetrimError], text: str) -> None:
    with pytest.raises(EdgetrimError) as caught, open_image(reference):
        pass
    assert type(caught.value) is error, str(caught.value)
    assert text in str(caught.value)
    assert "\n" not in str(caught.value)


def test_good_synthetic_archive_loads(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "a.tar", [good_entry()])
    with open_image(f"docker-archive:{archive}") as image:
        assert [str(layer.diff_id) for layer in image.layers] == [LAYER_DIGEST]


@pytest.mark.parametrize(
    ("manifest", "text"),
    [
        ({"Config": "config.json"}, "expected a list of images, found dict"),
        ([], "lists no images"),
        (["config.json"], "expected a JSON object, found a string"),
        ([good_entry(Config=5)], "field 'Config' must be a string, found an integer"),
        ([good_entry(Config="")], "'Config' is empty"),
        ([good_entry(Layers="layer/layer.tar")], "field 'Layers' must be a list"),
        ([good_entry(Layers=[7])], "'Layers' must hold strings, found an integer"),
        ([good_entry(RepoTags={"x": 1})], "field 'RepoTags' must be a list"),
        ([good_entry(LayerSources=[])], "field 'LayerSources' must be an object"),
        ([good_entry(LayerSources={LAYER_DIGEST: {"size": 1}})], "'digest' is missing"),
        ([good_entry(Config="absent.json")], "absent.json): file is missing"),
        ([good_entry(Layers=["absent/layer.tar"])], "layer file is missing"),
        ([good_entry(Layers=[])], "config lists 1 diff IDs but manifest.json lists 0 layers"),
    ],
)
def test_bad_manifest_json(tmp_path: Path, manifest: object, text: str) -> None:
    archive = docker_archive(tmp_path / "a.tar", manifest)
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, text)


@pytest.mark.parametrize(
    ("config", "text"),
    [
        (b"{not json", "image config is not valid JSON"),
        (b"[1, 2]", "image config is not a JSON object"),
        (b'{"rootfs": {"diff_ids": 5}}', "rootfs.diff_ids is not a list"),
        (b'{"rootfs": {"diff_ids": ["md5:abc"]}}', "invalid digest 'md5:abc'"),
    ],
)
def test_bad_config(tmp_path: Path, config: bytes, text: str) -> None:
    archive = docker_archive(tmp_path / "a.tar", [good_entry()], {"config.json": config})
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, text)


def test_oversized_manifest_json(tmp_path: Path) -> None:
    padding = " " * (8 * 1024 * 1024)
    archive = write_tar(tmp_path / "a.tar", {"manifest.json": f"[{padding}]".encode()})
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, "more than the 8388608")


def test_deeply_nested_json(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "a.tar", {"manifest.json": b"[" * 100_000})
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, "not valid JSON")


def test_symlink_loop_in_archive(tmp_path: Path) -> None:
    archive = docker_archive(
        tmp_path / "a.tar",
        [good_entry(Layers=["loop/a"])],
        {"loop/a": "b", "loop/b": "a"},
    )
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, "links in a row")


def test_symlink_out_of_archive_is_missing(tmp_path: Path) -> None:
    outside = docker_archive(tmp_path / "outside.tar", [good_entry()])
    archive = docker_archive(
        tmp_path / "a.tar",
        [good_entry(Layers=["evil/layer.tar"])],
        {"evil/layer.tar": f"../../{outside.name}"},
    )
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, "layer file is missing")


def test_folder_path_outside_rejected(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text(CONFIG)
    folder = tmp_path / "extracted"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps([good_entry(Config="../secret.json")]))
    assert_raises_one_line(f"docker-archive:{folder}", ImageFormatError, "path leads outside")


def test_legacy_parent_loop(tmp_path: Path) -> None:
    first, second = "1" * 64, "2" * 64
    archive = write_tar(
        tmp_path / "a.tar",
        {
            "repositories": json.dumps({"x": {"1": first}}).encode(),
            f"{first}/json": json.dumps({"id": first, "parent": second}).encode(),
            f"{second}/json": json.dumps({"id": second, "parent": first}).encode(),
        },
    )
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, "parent chain loops")


def test_legacy_bad_layer_id(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "a.tar", {"repositories": json.dumps({"x": {"1": "../../etc"}}).encode()}
    )
    assert_raises_one_line(f"docker-archive:{archive}", ImageFormatError, "invalid layer ID")


def write_layout(root: Path, index: object, blobs: dict[str, bytes] | None = None) -> Path:
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "index.json").write_text(json.dumps(index))
    for hex_digest, data in (blobs or {}).items():
        (root / "blobs" / "sha256" / hex_digest).write_bytes(data)
    return root


def blob_entry(data: bytes, media_type: str, **extra: object) -> tuple[dict[str, object], str]:
    hex_digest = hashlib.sha256(data).hexdigest()
    entry = {"mediaType": media_type, "digest": f"sha256:{hex_digest}", "size": len(data)}
    entry.update(extra)
    return entry, hex_digest


@pytest.mark.parametrize(
    ("index", "text"),
    [
        ([], "expected a JSON object, found a list"),
        ({"manifests": "x"}, "field 'manifests' must be a list"),
        ({"manifests": ["x"]}, "manifests[0]: expected a JSON object"),
        ({"manifests": [{"digest": "sha256:" + "a" * 64, "size": "1"}]}, "'size' must be an"),
        ({"manifests": [{"digest": "sha256:" + "a" * 64, "size": -1}]}, "size -1 is negative"),
        ({"manifests": [{"digest": "sha256:../../x", "size": 1}]}, "invalid digest"),
        (
            {"manifests": [{"digest": "sha256:" + "a" * 64, "size": 1, "annotations": {"a": 1}}]},
            "annotations must map strings to strings",
        ),
    ],
)
def test_bad_index_json(tmp_path: Path, index: object, text: str) -> None:
    layout = write_layout(tmp_path / "layout", index)
    assert_raises_one_line(f"oci:{layout}", ImageFormatError, text)


def test_bad_oci_layout_file(tmp_path: Path) -> None:
    layout = write_layout(tmp_path / "layout", {"manifests": []})
    (layout / "oci-layout").write_text('{"imageLayoutVersion": 1}')
    assert_raises_one_line(f"oci:{layout}", ImageFormatError, "'imageLayoutVersion' must be")


def test_manifest_config_not_object(tmp_path: Path) -> None:
    manifest = json.dumps({"schemaVersion": 2, "config": "x", "layers": []}).encode()
    entry, hex_digest = blob_entry(manifest, "application/vnd.oci.image.manifest.v1+json")
    layout = write_layout(tmp_path / "layout", {"manifests": [entry]}, {hex_digest: manifest})
    assert_raises_one_line(f"oci:{layout}", ImageFormatError, "field 'config' must be an object")


def test_schema1_manifest_rejected(tmp_path: Path) -> None:
    manifest = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
    entry, hex_digest = blob_entry(manifest, "")
    layout = write_layout(tmp_path / "layout", {"manifests": [entry]}, {hex_digest: manifest})
    assert_raises_one_line(f"oci:{layout}", ImageFormatError, "schema 1 manifests are not")


def test_unknown_layer_type_rejected(tmp_path: Path) -> None:
    config = CONFIG.encode()
    config_entry, config_hex = blob_entry(config, "application/vnd.oci.image.config.v1+json")
    layer_entry, layer_hex = blob_entry(LAYER, "application/x-not-a-layer")
    manifest = json.dumps(
        {"schemaVersion": 2, "config": config_entry, "layers": [layer_entry]}
    ).encode()
    entry, manifest_hex = blob_entry(manifest, "application/vnd.oci.image.manifest.v1+json")
    layout = write_layout(
        tmp_path / "layout",
        {"manifests": [entry]},
        {config_hex: config, layer_hex: LAYER, manifest_hex: manifest},
    )
    assert_raises_one_line(f"oci:{layout}", ImageFormatError, "'application/x-not-a-layer'")


def test_index_nesting_limit(tmp_path: Path) -> None:
    blobs: dict[str, bytes] = {}
    child, child_hex = blob_entry(b"{}", "application/vnd.oci.image.manifest.v1+json")
    for _ in range(10):
        index = json.dumps({"schemaVersion": 2, "manifests": [child]}).encode()
        child, child_hex = blob_entry(index, "application/vnd.oci.image.index.v1+json")
        blobs[child_hex] = index
    layout = write_layout(tmp_path / "layout", {"manifests": [child]}, blobs)
    assert_raises_one_line(f"oci:{layout}", ImageFormatError, "indexes nest more than 8 deep")
