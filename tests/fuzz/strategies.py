"""Hypothesis strategies for the fuzz tests: JSON documents, tar members and whole layers.

Generated values mix valid shapes with hostile ones (escaping names, odd PAX records, wrong
JSON types), because purely random bytes rarely get past the first parser.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from hypothesis import strategies as st

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=15,
)

MEDIA_TYPES = st.sampled_from(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.cncf.helm.config.v1+json",
        "",
    ]
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def maybe(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the valid value, sometimes any JSON value in its place."""
    return st.one_of(valid, valid, valid, JSON_VALUES)


TRICKY_NAMES = st.sampled_from(
    [
        "..",
        "../x",
        "a/../../b",
        "/abs/file",
        "./",
        ".",
        "",
        "a//b/./c",
        ".wh.",
        ".wh..wh..opq",
        "dir/.wh.file",
        ".wh..wh.plnk/1",
        "dir",
        "dir/file",
        "link",
        "link/file",
        "x" * 120,
        "d/" + "y" * 260,
        b"caf\xe9".decode("utf-8", "surrogateescape"),
    ]
)
NAMES = st.one_of(
    TRICKY_NAMES,
    st.text(alphabet="ab./\\-_ \x00\u00e9", max_size=20),
    st.lists(st.sampled_from(["a", "b", "..", ".", "dir", "link"]), max_size=5).map("/".join),
)
TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
        b"V",
        b"x",
        b"S",
    ]
)
PAX_RECORDS = st.dictionaries(
    st.sampled_from(
        [
            "path",
            "linkpath",
            "size",
            "mtime",
            "uid",
            "gid",
            "uname",
            "comment",
            "SCHILY.xattr.user.a",
            "SCHILY.xattr.security.capability",
            "LIBARCHIVE.xattr.user.b",
            "GNU.sparse.map",
            "GNU.sparse.size",
            "GNU.sparse.major",
            "GNU.sparse.minor",
            "GNU.sparse.realsize",
            "GNU.sparse.name",
        ]
    ),
    st.one_of(
        st.text(max_size=30),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.sampled_from(["nan", "inf", "-1", "1e300", "0,0", "1,2,3", "0.1"]),
    ),
    max_size=3,
)


@st.composite
def tar_members(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(draw(NAMES))
    info.type = draw(TYPES)
    info.mode = draw(st.integers(min_value=0, max_value=0o7777))
    info.uid = draw(st.sampled_from([0, 1000, 65534, 2**21 - 1]))
    info.mtime = draw(st.integers(min_value=0, max_value=2**33))
    info.linkname = draw(NAMES)
    info.devmajor = draw(st.integers(min_value=0, max_value=300))
    info.devminor = draw(st.integers(min_value=0, max_value=300))
    info.pax_headers = draw(PAX_RECORDS)
    data = draw(st.binary(max_size=600)) if info.type in tarfile.REGULAR_TYPES else b""
    info.size = len(data)
    return info, data


@st.composite
def layer_tars(draw: st.DrawFn) -> bytes:
    """A tar of generated members in one of the three tar formats, or what is left of it."""
    members = draw(st.lists(tar_members(), max_size=8))
    tar_format = draw(
        st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
    )
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tar_format, encoding="utf-8", errors="surrogateescape"
    ) as archive:
        for info, data in members:
            try:
                archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
            except (ValueError, UnicodeError, OverflowError):
                # The generated header does not fit this format; leave the member out.
                continue
    return buffer.getvalue()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes overwritten, and maybe cut short."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if not raw:
            break
        position = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[position] = draw(st.integers(min_value=0, max_value=255))
    if raw and draw(st.booleans()):
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return bytes(raw)


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def dump(value: object) -> bytes:
    return json.dumps(value).encode()
