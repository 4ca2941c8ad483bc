"""Craft whole images for the hostile tests: docker archives of given layer blobs, and bombs.

Every archive here is built by the test itself, so each case states exactly which bytes it
feeds edgetrim. Layer tars come from tests.fs.layers (member by member, any tar format).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import zstandard

Blob = tuple[bytes, str]  # (stored blob, diff ID "sha256:<hex>")


def tar_layer(tar: bytes) -> Blob:
    """An uncompressed layer: its blob is the tar, its diff ID the tar's digest."""
    return tar, "sha256:" + hashlib.sha256(tar).hexdigest()


def gzip_layer(tar: bytes) -> Blob:
    return gzip.compress(tar, mtime=0), "sha256:" + hashlib.sha256(tar).hexdigest()


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def docker_archive(path: Path, layers: list[Blob], *, config: dict | None = None) -> Path:
    """Write a docker save archive of ``layers`` (``<n>/layer.tar``) with a minimal config."""
    document = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        **(config or {}),
    }
    raw = json.dumps(document).encode()
    config_name = hashlib.sha256(raw).hexdigest() + ".json"
    names = [f"{index}/layer.tar" for index in range(len(layers))]
    manifest = [{"Config": config_name, "RepoTags": ["hostile/image:1"], "Layers": names}]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        add_bytes(archive, config_name, raw)
        for name, (blob, _) in zip(names, layers, strict=True):
            add_bytes(archive, name, blob)
        add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    return path


class ZeroTar:
    """The bytes of a tar holding one file of ``size`` zero bytes, generated in pieces."""

    def __init__(self, size: int, name: str = "zeros.bin"):
        info = tarfile.TarInfo(name)
        info.size = size
        self.header = info.tobuf(tarfile.PAX_FORMAT)
        self.size = size
        self.trailer = bytes(-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)

    def pieces(self, piece: int = 1 << 20) -> Iterator[bytes]:
        yield self.header
        left = self.size
        zeros = bytes(piece)
        while left:
            count = min(left, piece)
            yield zeros[:count]
            left -= count
        yield self.trailer


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of a tar with one ``size``-byte file of zeros (about size / 1000 bytes)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as compressor:
        for piece in ZeroTar(size).pieces():
            compressor.write(piece)
    return out.getvalue()


def zstd_bomb(size: int) -> bytes:
    """A zstd stream of a tar with one ``size``-byte file of zeros (a few KiB per GiB)."""
    out = io.BytesIO()
    compressor = zstandard.ZstdCompressor(level=19)
    with compressor.stream_writer(out, closefd=False) as writer:
        for piece in ZeroTar(size).pieces(8 << 20):
            writer.write(piece)
    return out.getvalue()


# Any diff ID: a bomb is rejected before its end, where the diff ID would be checked.
UNCHECKED_DIFF_ID = "sha256:" + "0" * 64


def dual_archive(
    path: Path,
    layer_tars: list[bytes],
    *,
    index_manifests: str = "normal",
    oci_layers: list[int] | None = None,
    docker_layers: list[int] | None = None,
) -> Path:
    """Write a Docker 25+ style archive: manifest.json and an OCI layout over one set of blobs.

    ``index_manifests`` is "normal" or "null" (index.json lists ``"manifests": null``).
    ``oci_layers`` and ``docker_layers`` list which layers (by index) each view names, in
    order; by default both name all layers in order, as Docker writes them.
    """
    digests = ["sha256:" + hashlib.sha256(tar).hexdigest() for tar in layer_tars]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": digests},
            "history": [{"created_by": "ENV A=1", "empty_layer": True}]
            + [{"created_by": f"COPY layer {i}"} for i in range(len(layer_tars))],
        }
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    chosen = list(range(len(layer_tars))) if oci_layers is None else oci_layers
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digests[i],
                    "size": len(layer_tars[i]),
                }
                for i in chosen
            ],
        }
    ).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    entries = None
    if index_manifests == "normal":
        entries = [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {
                    "io.containerd.image.name": "docker.io/hostile/dual:1",
                    "org.opencontainers.image.ref.name": "1",
                },
            }
        ]
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
    index["manifests"] = entries  # type: ignore[assignment]
    docker_chosen = list(range(len(layer_tars))) if docker_layers is None else docker_layers
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config_digest[7:]}",
            "RepoTags": ["hostile/dual:1"],
            "Layers": [f"blobs/sha256/{digests[i][7:]}" for i in docker_chosen],
        }
    ]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for tar, digest in zip(layer_tars, digests, strict=True):
            add_bytes(archive, f"blobs/sha256/{digest[7:]}", tar)
        add_bytes(archive, f"blobs/sha256/{config_digest[7:]}", config)
        add_bytes(archive, f"blobs/sha256/{manifest_digest[7:]}", manifest)
        add_bytes(archive, "index.json", json.dumps(index).encode())
        add_bytes(archive, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add_bytes(archive, "manifest.json", json.dumps(docker_manifest).encode())
    return path
