"""Read-only images and layers, independent of where they are stored.

A transport builds an :class:`Image` from a config and a list of :class:`Layer`, each with a
function that opens its raw blob. The model adds the digest checks: every read of a blob is
verified against its digest (``Layer.digest``, of the stored, possibly compressed bytes) and every
read of its tar against its diff ID (``Layer.diff_id``, of the uncompressed bytes).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard

from edgetrim.errors import ImageFormatError
from edgetrim.image import compression
from edgetrim.image.digest import Digest, VerifyingReader, read_into

BlobOpener = Callable[[], BinaryIO]


@dataclass(frozen=True)
class Platform:
    """The platform an image runs on, as in an OCI index entry."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageFormatError(f"invalid platform {text!r}; expected os/arch[/variant]")
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A reference to a blob by media type, digest and size."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the descriptor as the OCI JSON object."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        return out


class ImageConfig:
    """An image config blob: its exact bytes, its digest and the fields edgetrim uses."""

    def __init__(self, raw: bytes, *, name: str = "config"):
        self.raw = raw
        self.name = name
        self.digest = Digest.of_bytes(raw)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImageFormatError(f"{name}: image config is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ImageFormatError(f"{name}: image config is not a JSON object")
        self.data: dict[str, Any] = data
        rootfs = data.get("rootfs") or {}
        try:
            self.diff_ids = [
                Digest.parse(d, context=f"{name} rootfs.diff_ids")
                for d in rootfs.get("diff_ids") or []
            ]
        except (AttributeError, TypeError) as exc:
            raise ImageFormatError(f"{name}: rootfs.diff_ids is not a list") from exc

    @property
    def container(self) -> dict[str, Any]:
        """The ``config`` object: entrypoint, cmd, env, user, working dir, ports, labels."""
        value = self.data.get("config")
        return value if isinstance(value, dict) else {}

    def _strings(self, field: str) -> list[str]:
        """Return a list-of-strings field; a lone string is a one-item list, as in Docker."""
        value = self.container.get(field)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ImageFormatError(
                f"{self.name}: config.{field} must be a list of strings, not {value!r:.80}"
            )
        return list(value)

    def _string(self, field: str) -> str:
        value = self.container.get(field)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ImageFormatError(
                f"{self.name}: config.{field} must be a string, not {value!r:.80}"
            )
        return value

    @property
    def entrypoint(self) -> list[str]:
        return self._strings("Entrypoint")

    @property
    def cmd(self) -> list[str]:
        return self._strings("Cmd")

    @property
    def env(self) -> list[str]:
        return self._strings("Env")

    @property
    def working_dir(self) -> str:
        return self._string("WorkingDir")

    @property
    def user(self) -> str:
        return self._string("User")

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.data.get("history") or [])

    @property
    def platform(self) -> Platform:
        return Platform(
            self.data.get("os") or "linux",
            self.data.get("architecture") or "amd64",
            self.data.get("variant") or "",
        )


_DECOMPRESSION_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError)


class _LayerTarStream:
    """The decompressed side of a layer blob.

    Corrupt compressed data raises ImageFormatError naming the blob. At the end of the tar the
    rest of the compressed blob is read too, so that its digest is checked even when the
    decompressor stops before the end of the blob.
    """

    def __init__(self, stream: BinaryIO, raw: VerifyingReader, name: str):
        self._stream = stream
        self._raw = raw
        self._name = name

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except _DECOMPRESSION_ERRORS as exc:
            raise self._corrupt(exc) from exc
        if not data and size != 0:
            self._raw.drain()
        return data

    def readinto(self, buffer: memoryview) -> int:
        try:
            count = read_into(self._stream, buffer)
        except _DECOMPRESSION_ERRORS as exc:
            raise self._corrupt(exc) from exc
        if not count and len(buffer):
            self._raw.drain()
        return count

    def drain(self) -> None:
        """Read to the end, so that the digest of the blob is checked."""
        buffer = memoryview(bytearray(1 << 16))
        while self.readinto(buffer):
            pass

    def _corrupt(self, exc: Exception) -> ImageFormatError:
        return ImageFormatError(
            f"{self._name}: layer data is corrupt or truncated ({exc}); "
            "fetch or export the image again"
        )

    def close(self) -> None:
        self._stream.close()
        self._raw.close()


@dataclass(frozen=True)
class StoredRange:
    """The location of a blob's bytes in a local file: ``size`` bytes from ``offset``."""

    path: str
    offset: int
    size: int


@dataclass
class Layer:
    """One layer blob of an image.

    ``digest`` and ``size`` describe the stored blob; ``diff_id`` is the digest of its
    uncompressed tar. ``opener`` returns the raw stored bytes; it is None for a foreign layer
    whose blob is not in the image (reading it then raises ImageFormatError). ``stored`` is
    the location of those bytes when they are a plain range of a local file, so that a reader
    may read them in place. The opener is still the way to read them verified.
    """

    descriptor: Descriptor
    diff_id: Digest
    opener: BlobOpener | None
    name: str = ""
    stored: StoredRange | None = None

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def label(self) -> str:
        return self.name or f"layer {self.digest}"

    def open_compressed(self) -> BinaryIO:
        """Open the stored blob; reading raises DigestMismatchError if it is not as recorded."""
        if self.opener is None:
            raise ImageFormatError(
                f"{self.label}: the blob of this foreign layer is not in the image; "
                "fetch it from its URLs and add it to the image"
            )
        return VerifyingReader(  # type: ignore[return-value]
            self.opener(), self.digest, name=self.label, size=self.size
        )

    def open_uncompressed(self) -> BinaryIO:
        """Open the layer tar, decompressed and verified against both the digest and the diff ID.

        An uncompressed blob whose digest is its diff ID is hashed once, since both name the
        same bytes; ``docker save`` writes such layers.
        """
        raw = self.open_compressed()
        tar, kind = compression.open_decompressed(raw, name=self.label)
        stream = _LayerTarStream(tar, raw, self.label)  # type: ignore[arg-type]
        if kind is compression.Compression.NONE and self.diff_id == self.digest:
            return stream  # type: ignore[return-value]
        return VerifyingReader(  # type: ignore[return-value]
            stream,  # type: ignore[arg-type]
            self.diff_id,
            name=f"{self.label} (uncompressed)",
        )

    @contextlib.contextmanager
    def read_tar(self) -> Iterator[BinaryIO]:
        """Open the layer tar for reading and check both digests when the block ends normally.

        tarfile stops at the end-of-archive marker, before the end of the stream, so the rest
        is read here: otherwise a blob with trailing garbage or a wrong diff ID would pass.
        """
        stream = self.open_uncompressed()
        try:
            yield stream
            stream.drain()  # type: ignore[attr-defined]
        finally:
            stream.close()


@dataclass
class Image:
    """An image: its config, its layers in order (base first), and the names it was found under."""

    config: ImageConfig
    layers: list[Layer]
    names: list[str] = field(default_factory=list)
    manifest_raw: bytes | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.config.diff_ids) != len(self.layers):
            raise ImageFormatError(
                f"{self.source or 'image'}: config lists {len(self.config.diff_ids)} diff IDs "
                f"but the manifest lists {len(self.layers)} layers"
            )

    @property
    def compressed_size(self) -> int:
        """Bytes of config and layer blobs as stored, which is what a registry pull transfers."""
        return len(self.config.raw) + sum(layer.size for layer in self.layers)
