"""Pull images from and push them to registries that follow the OCI distribution spec.

``docker://HOST/REPO:TAG`` and ``docker://HOST/REPO@sha256:...`` name an image. Pulling reads
the manifest (an index or Docker manifest list is resolved to the requested platform, nested
ones too), then the config, both checked against their digests. Layers are not downloaded
when the image is opened: each read streams the blob from the registry and checks its digest
while it passes, and a broken connection resumes with a Range request. Pushing is in
:mod:`edgetrim.transports.registry_push`; the HTTP details are in
:mod:`edgetrim.transports.registry_client`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import BinaryIO

import httpx

from edgetrim.errors import (
    DigestMismatchError,
    ImageFormatError,
    ImageNotFoundError,
    RegistryError,
)
from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, Platform
from edgetrim.transports._json import MAX_JSON_BYTES
from edgetrim.transports._source import BlobSource
from edgetrim.transports.oci_layout import host_platform, load_descriptor
from edgetrim.transports.reference import RegistryReference
from edgetrim.transports.registry_client import (
    RegistryClient,
    RegistryOptions,
    error_summary,
    read_limited,
)

__all__ = ["RegistryBlobOpener", "RegistryOptions", "RegistrySource", "read_registry"]

logger = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    [
        mediatypes.OCI_INDEX,
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST_LIST,
        mediatypes.DOCKER_MANIFEST,
    ]
)
_CHUNK_SIZE = 1 << 20


@contextlib.contextmanager
def read_registry(
    ref: RegistryReference,
    *,
    platform: Platform | None = None,
    options: RegistryOptions | None = None,
    display: str | None = None,
) -> Iterator[Image]:
    """Open the image ``ref`` names in its registry; layers stream from it inside the block.

    ``platform`` chooses from an index (default: the host's). Raises ImageNotFoundError for
    an unknown repository, tag or digest, RegistryAuthError for missing or rejected
    credentials, RegistryError when the registry cannot be reached.
    """
    options = options or RegistryOptions.from_environment()
    display = display or f"docker://{ref}"
    with RegistryClient(ref.registry, ref.api_host, ref.host_name, options) as client:
        source = RegistrySource(client, ref, display)
        top = source.fetch_top_manifest()
        yield load_descriptor(source, top, platform or host_platform(), names=[str(ref)])


class RegistrySource(BlobSource):
    """The manifests and blobs of one repository, named as in an OCI layout.

    Blobs are ``blobs/<algorithm>/<hex>`` and manifests ``manifests/<digest>``. Manifests
    are kept in memory once fetched (each is at most ``MAX_JSON_BYTES``); blobs are not.
    """

    def __init__(self, client: RegistryClient, ref: RegistryReference, display: str):
        self.client = client
        self.ref = ref
        self.display = display
        self.scope = f"repository:{ref.repository}:pull"
        self._manifests: dict[str, bytes] = {}
        self._sizes: dict[str, int] = {}

    def manifest_name(self, digest: Digest) -> str:
        return f"manifests/{digest}"

    def fetch_top_manifest(self) -> Descriptor:
        """Fetch the manifest that the reference's tag or digest names; return its descriptor."""
        raw, media_type = self._fetch_manifest(self.ref.manifest_reference)
        digest = Digest.of_bytes(raw)
        if self.ref.digest is not None and str(digest) != self.ref.digest:
            raise DigestMismatchError(
                f"{self.display}: the registry returned a manifest with digest {digest}, not "
                f"the requested {self.ref.digest}"
            )
        self._manifests[str(digest)] = raw
        return Descriptor(media_type, digest, len(raw))

    def _fetch_manifest(self, reference: str) -> tuple[bytes, str]:
        path = f"/v2/{self.ref.repository}/manifests/{reference}"
        response = self.client.request(
            "GET", path, scope=self.scope, headers={"Accept": MANIFEST_ACCEPT}, stream=True
        )
        with contextlib.closing(response):
            what = f"manifest {reference} of {self.ref.repository}"
            self.client.check_auth(response, what)
            if response.status_code == 404:
                raise ImageNotFoundError(
                    f"{self.display}: the registry has no {what} "
                    f"({error_summary(response)}); check the name and tag"
                )
            if response.status_code != 200:
                raise RegistryError(
                    f"{self.display}: GET {what} returned {response.status_code}: "
                    f"{error_summary(response)}"
                )
            raw = read_limited(response, MAX_JSON_BYTES)
            if raw is None:
                raise ImageFormatError(
                    f"{self.display}: {what} is larger than the {MAX_JSON_BYTES} bytes "
                    "edgetrim reads for a manifest; the registry serves something else"
                )
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed != str(Digest.of_bytes(raw)) and claimed.startswith("sha256:"):
            raise DigestMismatchError(
                f"{self.display}: {what} has digest {Digest.of_bytes(raw)} but the registry "
                f"reports {claimed}; the registry or a proxy changed it"
            )
        return raw, media_type

    # -- BlobSource --------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        if name.startswith("manifests/"):
            digest = name.removeprefix("manifests/")
            if digest not in self._manifests:
                try:
                    self._manifests[digest] = self._fetch_manifest(digest)[0]
                except ImageNotFoundError:
                    return False
            return True
        return self._head(name) is not None

    def size(self, name: str) -> int:
        if name.startswith("manifests/"):
            return len(self._manifests[name.removeprefix("manifests/")])
        size = self._head(name)
        if size is None:
            raise ImageFormatError(f"{self.describe(name)}: blob is missing from the registry")
        return size

    def read_bytes(self, name: str, *, limit: int = MAX_JSON_BYTES) -> bytes:
        if name.startswith("manifests/"):
            self.exists(name)
            return self._manifests[name.removeprefix("manifests/")]
        with contextlib.closing(self.opener(name)()) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise ImageFormatError(
                f"{self.describe(name)}: blob is larger than the {limit} bytes edgetrim reads "
                "for a JSON document"
            )
        return data

    def opener(self, name: str) -> RegistryBlobOpener:  # type: ignore[override]
        if name.startswith("manifests/"):
            raise ImageFormatError(f"{self.describe(name)}: manifests are read whole")
        return RegistryBlobOpener(self, _digest_of(name))

    def _head(self, name: str) -> int | None:
        """Return the size of a blob from a HEAD request, or None if the registry lacks it."""
        if name in self._sizes:
            return self._sizes[name]
        digest = _digest_of(name)
        path = f"/v2/{self.ref.repository}/blobs/{digest}"
        response = self.client.request("HEAD", path, scope=self.scope, follow_redirects=True)
        with contextlib.closing(response):
            self.client.check_auth(response, f"blob {digest}")
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise RegistryError(f"{self.describe(name)}: HEAD returned {response.status_code}")
            length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else -1
        self._sizes[name] = size
        return size


class RegistryBlobOpener:
    """Opens one blob of a registry repository as a stream.

    The push reads ``api_host`` and ``repository`` to mount the blob into another
    repository of the same registry instead of copying its bytes.
    """

    def __init__(self, source: RegistrySource, digest: Digest):
        self._source = source
        self.digest = digest

    @property
    def api_host(self) -> str:
        return self._source.client.api_host

    @property
    def repository(self) -> str:
        return self._source.ref.repository

    def __call__(self) -> BinaryIO:
        return _BlobStream(self._source, self.digest)  # type: ignore[return-value]


class _BlobStream:
    """A blob download read in chunks; a broken connection resumes where it stopped.

    Resuming uses a Range request and is tried at most ``RegistryOptions.retries`` times in
    all. The caller checks the digest, so a registry that resumes at the wrong offset is
    caught there.
    """

    def __init__(self, source: RegistrySource, digest: Digest):
        self._source = source
        self._digest = digest
        self._label = source.describe(f"blobs/{digest.algorithm}/{digest.hex}")
        self._offset = 0
        self._resumes_left = source.client.options.retries
        self._pending = b""
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._closed = False

    def read(self, size: int = -1) -> bytes:
        if self._closed:
            raise ValueError("read from a closed blob stream")
        if size is None or size < 0:
            parts = []
            while chunk := self.read(_CHUNK_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        while not self._pending:
            next_chunk = self._next_chunk()
            if next_chunk is None:
                return b""
            self._pending = next_chunk
        data, self._pending = self._pending[:size], self._pending[size:]
        self._offset += len(data)
        return data

    def _next_chunk(self) -> bytes | None:
        while True:
            if self._chunks is None:
                self._open()
            assert self._chunks is not None
            try:
                return next(self._chunks, None)
            except httpx.TransportError as exc:
                if self._resumes_left <= 0:
                    raise RegistryError(
                        f"{self._label}: the download broke off at byte {self._offset} "
                        f"({exc}) and could not be resumed; try again later"
                    ) from None
                self._resumes_left -= 1
                logger.info(
                    "%s: download broke off at byte %d (%s); resuming",
                    self._label,
                    self._offset,
                    exc,
                )
                self._close_response()

    def _open(self) -> None:
        source = self._source
        path = f"/v2/{source.ref.repository}/blobs/{self._digest}"
        headers = {"Range": f"bytes={self._offset}-"} if self._offset else {}
        response = source.client.request(
            "GET", path, scope=source.scope, headers=headers, stream=True, follow_redirects=True
        )
        expected = 206 if self._offset else 200
        if response.status_code != expected:
            with contextlib.closing(response):
                source.client.check_auth(response, f"blob {self._digest}")
                summary = error_summary(response)
            if response.status_code == 404:
                raise ImageFormatError(
                    f"{self._label}: blob is missing from the registry ({summary})"
                )
            raise RegistryError(
                f"{self._label}: GET returned {response.status_code}, expected {expected}: "
                f"{summary}"
            )
        if self._offset and not response.headers.get("Content-Range", "").startswith(
            f"bytes {self._offset}-"
        ):
            response.close()
            raise RegistryError(
                f"{self._label}: the registry resumed the download at the wrong offset "
                f"({response.headers.get('Content-Range')!r}, expected byte {self._offset})"
            )
        self._response = response
        self._chunks = response.iter_raw(_CHUNK_SIZE)

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response = None
        self._chunks = None

    def close(self) -> None:
        self._close_response()
        self._closed = True

    def __enter__(self) -> _BlobStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _digest_of(name: str) -> Digest:
    algorithm, _, hex_digest = name.removeprefix("blobs/").partition("/")
    return Digest.parse(f"{algorithm}:{hex_digest}", context=name)
