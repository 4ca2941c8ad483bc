"""Write the minimized image: the original config with one layer holding the kept paths."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from edgetrim.fs.layerwrite import write_layer
from edgetrim.fs.tree import FileTree
from edgetrim.image.mediatypes import OCI_LAYER_GZIP
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer

# Fields of a Docker config that describe the build container, not the image; they would
# point at the original build after minimization.
_BUILD_ONLY_FIELDS = ("container", "container_config", "parent")


def build_minimized_image(
    image: Image,
    tree: FileTree,
    keep: set[str],
    work_dir: Path,
    *,
    kept_summary: str,
    replacements: Mapping[str, bytes] | None = None,
    content_root: Path | None = None,
) -> Image:
    """Return a new image with the same run-time config and one layer of the kept paths.

    Entrypoint, cmd, env, user, working directory, exposed ports, labels and stop signal are
    copied unchanged. The history is replaced by one entry, dated as the original image, so the
    same input and keep-set give the same config and image digests. The layer and its spool
    go to ``work_dir``; ``content_root``, a rootfs unpacked from ``image``, supplies content.
    """
    layer_path = work_dir / "minimized-layer.tar.gz"
    with open(layer_path, "wb") as out:
        info = write_layer(
            image, tree, keep, out, compression="gzip", replacements=replacements,
            spool_dir=work_dir, content_root=content_root,
        )  # fmt: skip
    layer = Layer(
        Descriptor(OCI_LAYER_GZIP, info.digest, info.size),
        info.diff_id,
        opener=lambda: layer_path.open("rb"),
        name="minimized layer",
    )
    data = {k: v for k, v in image.config.data.items() if k not in _BUILD_ONLY_FIELDS}
    data["rootfs"] = {"type": "layers", "diff_ids": [str(info.diff_id)]}
    entry = {"created_by": "edgetrim minimize", "comment": kept_summary}
    if image.config.data.get("created"):
        entry = {"created": image.config.data["created"], **entry}
    data["history"] = [entry]
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return Image(
        ImageConfig(raw, name="minimized config"),
        [layer],
        names=list(image.names),
        source="minimized image",
    )
