"""Fuzz docker archives, OCI layouts and OCI archives, and the parsers of their documents.

Each example builds an archive or layout from generated manifest.json, index.json, manifests,
configs and layer blobs, opens it and reads its file tree. The only exceptions allowed are
edgetrim's documented ones (EdgetrimError and subclasses).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetrim.errors import EdgetrimError
from edgetrim.fs.tree import FileTree
from edgetrim.image.model import Platform
from edgetrim.transports import open_image, parse_reference
from edgetrim.transports._json import parse_descriptor
from edgetrim.transports.registry_auth import load_credentials, parse_challenges
from tests.fs.layers import sample_layers
from tests.fuzz.conftest import examples
from tests.fuzz.strategies import (
    JSON_VALUES,
    MEDIA_TYPES,
    compress,
    dump,
    layer_tars,
    maybe,
    mutated,
    sha256,
)

# Hypothesis warns when it prints a large example, which pytest's settings make an error.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
PLATFORMS = [None, Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]


@st.composite
def layer_blobs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A stored layer blob and the tar it should hold, sometimes not matching."""
    tar = draw(st.one_of(st.sampled_from(sample_layers()), layer_tars()))
    blob = compress(tar, draw(st.sampled_from(["none", "gzip", "zstd"])))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        blob = draw(mutated(blob))
    return blob, tar


@st.composite
def configs(draw: st.DrawFn, diff_ids: list[str]) -> bytes:
    document = draw(
        st.fixed_dictionaries(
            {
                "architecture": maybe(st.sampled_from(["amd64", "arm64"])),
                "os": maybe(st.just("linux")),
                "rootfs": maybe(
                    st.fixed_dictionaries(
                        {"type": st.just("layers"), "diff_ids": maybe(st.just(diff_ids))}
                    )
                ),
                "history": maybe(st.lists(JSON_VALUES, max_size=3)),
            }
        )
    )
    return dump(document)


def descriptor(media_type: str, data: bytes) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            "mediaType": maybe(st.one_of(st.just(media_type), MEDIA_TYPES)),
            "digest": maybe(st.one_of(st.just(sha256(data)), st.just("sha256:" + "0" * 64))),
            "size": maybe(st.one_of(st.just(len(data)), st.integers(-1, 1 << 40))),
        },
        optional={"urls": st.lists(st.text(max_size=20), max_size=2), "platform": JSON_VALUES},
    )


@st.composite
def docker_archives(draw: st.DrawFn) -> bytes:
    layers = draw(st.lists(layer_blobs(), max_size=3))
    diff_ids = [sha256(tar) for _, tar in layers]
    config = draw(configs(diff_ids))
    names = [f"{i}/layer.tar" for i in range(len(layers))]
    entry = draw(
        st.fixed_dictionaries(
            {
                "Config": maybe(st.just("config.json")),
                "RepoTags": maybe(st.just(["fuzz/image:1"])),
                "Layers": maybe(st.just(names)),
            }
        )
    )
    manifest = draw(maybe(st.just([entry])))
    members = {"manifest.json": dump(manifest), "config.json": config}
    members.update({name: blob for name, (blob, _) in zip(names, layers, strict=True)})
    return tar_of(members)


@st.composite
def oci_layouts(draw: st.DrawFn) -> dict[str, bytes]:
    layers = draw(st.lists(layer_blobs(), max_size=3))
    config = draw(configs([sha256(tar) for _, tar in layers]))
    blobs = {sha256(blob): blob for blob, _ in layers}
    blobs[sha256(config)] = config
    layer_descriptors = [
        draw(descriptor("application/vnd.oci.image.layer.v1.tar+gzip", blob)) for blob, _ in layers
    ]
    manifest = dump(
        draw(
            st.fixed_dictionaries(
                {
                    "schemaVersion": maybe(st.just(2)),
                    "mediaType": maybe(st.just("application/vnd.oci.image.manifest.v1+json")),
                    "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                    "layers": maybe(st.just(layer_descriptors)),
                }
            )
        )
    )
    blobs[sha256(manifest)] = manifest
    top = draw(descriptor("application/vnd.oci.image.manifest.v1+json", manifest))
    if draw(st.booleans()):
        # Wrap the manifest in an index, as multi-platform images do.
        index = dump({"schemaVersion": 2, "manifests": [{**top, "platform": draw(JSON_VALUES)}]})
        blobs[sha256(index)] = index
        top = draw(descriptor("application/vnd.oci.image.index.v1+json", index))
    index_json = draw(
        st.fixed_dictionaries(
            {"schemaVersion": maybe(st.just(2)), "manifests": maybe(st.just([top]))}
        )
    )
    files = {f"blobs/sha256/{digest[7:]}": data for digest, data in blobs.items()}
    files["index.json"] = dump(index_json)
    files["oci-layout"] = dump(draw(maybe(st.just({"imageLayoutVersion": "1.0.0"}))))
    return files


def tar_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def open_and_read(reference: str, platform: Platform | None) -> None:
    with contextlib.suppress(EdgetrimError), open_image(reference, platform=platform) as image:
        FileTree.from_image(image)


@examples(0.3)
@given(docker_archives(), st.sampled_from(PLATFORMS))
def test_docker_archives(archive: bytes, platform: Platform | None) -> None:
    with tempfile.TemporaryDirectory(prefix="edgetrim-fuzz-") as temp:
        path = Path(temp) / "archive.tar"
        path.write_bytes(archive)
        open_and_read(f"docker-archive:{path}", platform)


@examples(0.3)
@given(docker_archives().flatmap(mutated))
def test_mutated_docker_archives(archive: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="edgetrim-fuzz-") as temp:
        path = Path(temp) / "archive.tar"
        path.write_bytes(archive)
        open_and_read(f"docker-archive:{path}", None)


@examples(0.3)
@given(oci_layouts(), st.sampled_from(PLATFORMS))
def test_oci_layouts_and_archives(files: dict[str, bytes], platform: Platform | None) -> None:
    with tempfile.TemporaryDirectory(prefix="edgetrim-fuzz-") as temp:
        root = Path(temp) / "layout"
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        open_and_read(f"oci:{root}", platform)
        archive = Path(temp) / "layout.tar"
        archive.write_bytes(tar_of(files))
        open_and_read(f"oci-archive:{archive}", platform)
        open_and_read(f"docker-archive:{archive}", platform)


@given(JSON_VALUES)
def test_descriptors(value: object) -> None:
    with contextlib.suppress(EdgetrimError):
        parse_descriptor(value, where="fuzz")


@given(st.text(max_size=80))
def test_references(text: str) -> None:
    with contextlib.suppress(EdgetrimError):
        parse_reference(text)
    with contextlib.suppress(EdgetrimError):
        parse_reference("docker://" + text)


@given(st.text(max_size=120))
def test_challenges(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme


@given(st.one_of(JSON_VALUES.map(dump), st.binary(max_size=100)))
def test_docker_config_files(raw: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="edgetrim-fuzz-") as temp:
        (Path(temp) / "config.json").write_bytes(raw)
        with contextlib.suppress(EdgetrimError):
            load_credentials("registry.example", config_dir=Path(temp))
