"""Build small images in memory from layer tars written here, for cases no fixture has."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass

from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Member:
    """One tar member: a regular file, directory, symlink, hardlink or whiteout."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    uid: int = 0


def file(path: str, data: bytes, mode: int = 0o644, uid: int = 0) -> Member:
    return Member(path, "file", data, mode, uid=uid)


def directory(path: str, mode: int = 0o755) -> Member:
    return Member(path, "dir", mode=mode)


def symlink(path: str, target: str) -> Member:
    return Member(path, "symlink", mode=0o777, target=target)


def hardlink(path: str, target: str) -> Member:
    return Member(path, "hardlink", target=target)


def whiteout(path: str) -> Member:
    parent, _, name = path.rpartition("/")
    return Member(f"{parent}/.wh.{name}", "file")


def opaque(directory_path: str) -> Member:
    return Member(f"{directory_path}/.wh..wh..opq", "file")


def layer_tar(*members: Member) -> bytes:
    """Return an uncompressed tar of the members, in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.path.lstrip("/"))
            info.mode = member.mode
            info.uid = member.uid
            if member.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif member.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = member.target
            elif member.kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = member.target.lstrip("/")
            else:
                info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return buffer.getvalue()


def make_image(
    *layers: bytes, user: str = "", env: list[str] | None = None, history: list[dict] | None = None
) -> Image:
    """Return an image whose layers are the given uncompressed tars, base first."""
    diff_ids = [Digest.of_bytes(data) for data in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": user, "Env": env or []},
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        "history": history
        if history is not None
        else [{"created_by": f"step {i}"} for i in range(len(layers))],
    }
    image_layers = [
        Layer(
            descriptor=Descriptor(LAYER_MEDIA_TYPE, digest, len(data)),
            diff_id=digest,
            opener=lambda data=data: io.BytesIO(data),
            name=f"synthetic layer {index}",
        )
        for index, (digest, data) in enumerate(zip(diff_ids, layers, strict=True))
    ]
    return Image(
        config=ImageConfig(json.dumps(config).encode()), layers=image_layers, source="synthetic"
    )
