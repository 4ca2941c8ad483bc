"""Read the docker archive layout from before Docker 1.10, which has no manifest.json.

Such an archive names its images in ``repositories`` (repository to tag to top layer ID).
Each layer has a folder ``<id>/`` with ``layer.tar`` and ``json``, a v1 image description
whose ``parent`` field gives the layer below. There is no image config, so one is built from
the top layer's ``json`` the way ``docker load`` converts v1 images: the v1-only fields are
dropped, and ``rootfs`` and ``history`` are added. Its digest therefore differs from any
config Docker itself would compute for the same image.
"""

from __future__ import annotations

import re
from typing import Any

from edgetrim.errors import ImageFormatError, ImageNotFoundError, InvalidReferenceError
from edgetrim.image.compression import Compression, sniff
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer
from edgetrim.transports import _blobs
from edgetrim.transports._json import dump_json, expect_object, get_field
from edgetrim.transports._source import BlobSource
from edgetrim.transports.reference import normalize_docker_name

REPOSITORIES_FILE = "repositories"
_LAYER_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Fields of a v1 image description that have no place in an image config.
_V1_ONLY_FIELDS = frozenset({"id", "parent", "Size", "parent_id", "layer_id", "throwaway"})


def load_legacy(source: BlobSource, *, name: str | None, source_index: int | None) -> Image:
    """Build the selected image of a pre-1.10 archive, hashing its layers for their diff IDs."""
    tags = _read_repositories(source)
    top_id = _select_top_layer(tags, source.display, name=name, source_index=source_index)
    chain = _layer_chain(source, top_id)
    layers = [_load_layer(source, layer_id) for layer_id, _ in chain]
    config_data = _config_from_v1(chain[-1][1], [v1 for _, v1 in chain], layers)
    config = ImageConfig(dump_json(config_data), name=source.describe(f"{top_id}/json"))
    names = sorted(tag for tag, layer_id in tags.items() if layer_id == top_id)
    return Image(config, layers, names=names, source=source.display)


def _read_repositories(source: BlobSource) -> dict[str, str]:
    """Return ``name:tag`` to top layer ID for every tag in the repositories file."""
    where = source.describe(REPOSITORIES_FILE)
    repositories = expect_object(source.read_json(REPOSITORIES_FILE), where=where)
    tags: dict[str, str] = {}
    for repository, tag_map in repositories.items():
        for tag, layer_id in expect_object(tag_map, where=f"{where} {repository!r}").items():
            if not isinstance(layer_id, str) or not _LAYER_ID_RE.match(layer_id):
                raise ImageFormatError(f"{where}: {repository}:{tag} has invalid layer ID")
            try:
                tags[normalize_docker_name(f"{repository}:{tag}")] = layer_id
            except ValueError:
                tags[f"{repository}:{tag}"] = layer_id
    if not tags:
        raise ImageFormatError(f"{where}: lists no images; export the image again")
    return tags


def _select_top_layer(
    tags: dict[str, str], display: str, *, name: str | None, source_index: int | None
) -> str:
    choices = sorted(tags)
    if source_index is not None:
        if source_index >= len(choices):
            raise ImageNotFoundError(
                f"{display}: no image @{source_index}; the archive contains {', '.join(choices)}"
            )
        return tags[choices[source_index]]
    if name is not None:
        if name not in tags:
            raise ImageNotFoundError(
                f"{display}: no image named {name}; the archive contains {', '.join(choices)}"
            )
        return tags[name]
    if len(set(tags.values())) == 1:
        return next(iter(tags.values()))
    raise InvalidReferenceError(
        f"{display}: the archive contains {len(choices)} images, so the reference must choose "
        f"one with :NAME:TAG: {', '.join(choices)}"
    )


def _layer_chain(source: BlobSource, top_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Follow ``parent`` from the top layer down and return (ID, v1 JSON) pairs, base first."""
    chain: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    layer_id: str | None = top_id
    while layer_id:
        if layer_id in seen:
            raise ImageFormatError(
                f"{source.describe(f'{layer_id}/json')}: the parent chain loops back to this "
                "layer; the archive is corrupt"
            )
        seen.add(layer_id)
        where = source.describe(f"{layer_id}/json")
        v1 = expect_object(source.read_json(f"{layer_id}/json"), where=where)
        chain.append((layer_id, v1))
        layer_id = get_field(v1, "parent", str, where=where, default="")
        if layer_id and not _LAYER_ID_RE.match(layer_id):
            raise ImageFormatError(f"{where}: parent {layer_id!r} is not a layer ID")
    chain.reverse()
    return chain


def _load_layer(source: BlobSource, layer_id: str) -> Layer:
    path = f"{layer_id}/layer.tar"
    label = source.describe(path)
    if not source.exists(path):
        raise ImageFormatError(
            f"{label}: layer file is missing from the archive; export the image again"
        )
    opener = source.opener(path)
    diff_id = _blobs.hash_uncompressed(opener, name=label)
    kind = sniff(_blobs.read_head(opener))
    digest = diff_id if kind is Compression.NONE else _blobs.hash_blob(opener)
    descriptor = Descriptor(_blobs.DOCKER_LAYER_TYPES[kind], digest, source.size(path))
    return Layer(descriptor, diff_id, opener, name=label, stored=source.stored_range(path))


def _config_from_v1(
    top: dict[str, Any], descriptions: list[dict[str, Any]], layers: list[Layer]
) -> dict[str, Any]:
    config = {key: value for key, value in top.items() if key not in _V1_ONLY_FIELDS}
    config["rootfs"] = {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]}
    config["history"] = [_history_entry(v1) for v1 in descriptions]
    return config


def _history_entry(v1: dict[str, Any]) -> dict[str, Any]:
    container_config = v1.get("container_config")
    command = container_config.get("Cmd") if isinstance(container_config, dict) else None
    entry = {
        "created": v1.get("created"),
        "author": v1.get("author"),
        "comment": v1.get("comment"),
        "created_by": _join_command(command),
    }
    return {key: value for key, value in entry.items() if isinstance(value, str) and value}


def _join_command(command: Any) -> str | None:
    if isinstance(command, list) and all(isinstance(part, str) for part in command):
        return " ".join(command)
    return None
