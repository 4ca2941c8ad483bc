"""Build synthetic layer tars and in-memory Images for the fs tests.

A member is a (TarInfo, content) pair. The helpers below set the fields a test cares about and
leave the rest at fixed values, so two builds of the same members give the same bytes.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import tarfile
from pathlib import Path

from edgetrim.image import Descriptor, Digest, Image, ImageConfig, Layer

Member = tuple[tarfile.TarInfo, bytes]

MTIME = 1_700_000_000
TAR_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def _info(name: str, kind: bytes, mode: int, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    xattrs = fields.pop("xattrs", None) or {}
    for key, value in fields.items():
        setattr(info, key, value)
    info.pax_headers = {
        f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
        for key, value in xattrs.items()  # type: ignore[attr-defined]
    }
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **fields: object) -> Member:
    """A regular file with ``data`` as content."""
    info = _info(name, tarfile.REGTYPE, mode, **fields)
    info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755, **fields: object) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, **fields), b""


def symlink(name: str, target: str, **fields: object) -> Member:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **fields), b""


def hardlink(name: str, target: str, **fields: object) -> Member:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target, **fields), b""


def whiteout(name: str) -> Member:
    """A whiteout marker as Docker writes it: an empty regular file."""
    return reg(name, mode=0)


def device(name: str, kind: bytes, major: int, minor: int, mode: int = 0o666) -> Member:
    return _info(name, kind, mode, devmajor=major, devminor=minor), b""


def fifo(name: str, mode: int = 0o644) -> Member:
    return _info(name, tarfile.FIFOTYPE, mode), b""


def build_tar(*members: Member, tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    """Return the bytes of an uncompressed tar holding ``members`` in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tar_format, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def image_from_blobs(folder: Path, blobs: list[tuple[bytes, bytes, str]]) -> Image:
    """Build an Image from (stored blob, uncompressed tar, media type) triples saved in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = []
    for blob, tar, media_type in blobs:
        digest = Digest.of_bytes(blob)
        path = folder / digest.hex
        path.write_bytes(blob)
        layers.append(
            Layer(
                Descriptor(media_type, digest, len(blob)),
                diff_id=Digest.of_bytes(tar),
                opener=functools.partial(open, path, "rb"),
                name=f"layer {len(layers)}",
            )
        )
    config = {"rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]}}
    return Image(ImageConfig(json.dumps(config).encode()), layers)


def make_image(folder: Path, *tars: bytes, gzipped: bool = False) -> Image:
    """Build an Image whose layers are the given uncompressed tars, optionally gzip-compressed."""
    blobs = []
    for tar in tars:
        if gzipped:
            blobs.append((gzip.compress(tar, mtime=0), tar, GZIP_MEDIA_TYPE))
        else:
            blobs.append((tar, tar, TAR_MEDIA_TYPE))
    return image_from_blobs(folder, blobs)


def image_from_docker_archive(archive: Path, folder: Path) -> Image:
    """Extract the layers of a `docker save` style archive into folder and build its Image.

    Layers are looked up through manifest.json; the diff IDs come from the image config.
    """
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config_raw = outer.extractfile(manifest["Config"]).read()  # type: ignore[union-attr]
        blobs = [outer.extractfile(name).read() for name in manifest["Layers"]]  # type: ignore[union-attr]
    config = ImageConfig(config_raw)
    folder.mkdir(parents=True, exist_ok=True)
    layers = []
    for index, (blob, diff_id) in enumerate(zip(blobs, config.diff_ids, strict=True)):
        path = folder / f"{index}.blob"
        path.write_bytes(blob)
        media_type = GZIP_MEDIA_TYPE if blob.startswith(b"\x1f\x8b") else TAR_MEDIA_TYPE
        layers.append(
            Layer(
                Descriptor(media_type, Digest.of_bytes(blob), len(blob)),
                diff_id=diff_id,
                opener=functools.partial(open, path, "rb"),
                name=f"{archive.name} layer {index}",
            )
        )
    return Image(config, layers)


# A version 2 security.capability value: cap_net_bind_service (bit 10), permitted and effective.
CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")
NON_UTF8 = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
LONG_NAME = "deep/" + "n" * 150


def sample_layers() -> list[bytes]:
    """Two layers with every kind of entry, special modes, owners, xattrs and whiteouts."""
    base = build_tar(
        directory("bin"),
        reg("bin/busybox", b"\x7fELF busybox", mode=0o755, uname="root", gname="root"),
        hardlink("bin/sh", "bin/busybox"),
        hardlink("bin/ls", "bin/busybox"),
        directory("usr/bin"),
        reg("usr/bin/su", b"su", mode=0o4755),
        reg("usr/bin/wall", b"wall", mode=0o2755, gid=5, gname="tty"),
        reg("usr/bin/ping", b"ping", mode=0o755, xattrs={"security.capability": CAPABILITY}),
        directory("usr/lib"),
        reg("usr/lib/libc.so.6", b"libc"),
        symlink("lib", "usr/lib"),
        directory("tmp", mode=0o1777),
        directory("home/app", mode=0o750, uid=1000, gid=1000, uname="app", gname="app"),
        reg("home/app/secret", b"s3cret", mode=0o600, uid=1000, gid=1000),
        reg("home/app/note", b"n", xattrs={"user.comment": b"kept"}),
        directory("etc/ro", mode=0o555),
        reg("etc/ro/conf", b"conf", mode=0o444),
        reg("etc/old", b"old"),
        directory("var/cache/apt"),
        reg("var/cache/apt/pkgcache.bin", b"cache"),
        device("dev/null", tarfile.CHRTYPE, 1, 3),
        device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        fifo("run/initctl", mode=0o600),
        reg(NON_UTF8, b"latin-1 name"),
        reg(LONG_NAME, b"long"),
        reg("empty", b""),
    )
    upper = build_tar(
        whiteout("etc/.wh.old"),
        whiteout("var/cache/apt/.wh..wh..opq"),
        reg("var/cache/apt/new", b"new"),
        reg("usr/lib/libc.so.6", b"libc v2"),
        symlink("run/dangling", "/does/not/exist"),
    )
    return [base, upper]
