"""Push an image to a registry: its blobs, then its manifest.

Each blob gets the cheapest of three ways that works. A layer pulled from another
repository of the same registry is mounted
(``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>``). A blob that a HEAD request
finds in the registry is skipped. Any other blob is uploaded. Uploads are chunked (PATCH
requests with Content-Range, then a PUT with the digest) and fall back to one monolithic PUT
when the registry rejects PATCH. Blob bytes stream from the source through a digest check
and are never held whole in memory. A failed upload starts again from the first byte, at
most ``RegistryOptions.retries`` times. The manifest is pushed last, so a tag never names an
image with missing blobs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from typing import BinaryIO

import httpx

from edgetrim.errors import (
    DigestMismatchError,
    EdgetrimError,
    ImageFormatError,
    ImageWriteError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryError,
)
from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, Layer
from edgetrim.transports import _blobs
from edgetrim.transports._json import dump_json
from edgetrim.transports._oci_write import oci_layer_descriptor, oci_manifest
from edgetrim.transports.reference import RegistryReference
from edgetrim.transports.registry import RegistryBlobOpener
from edgetrim.transports.registry_client import RegistryClient, RegistryOptions, error_summary

__all__ = ["write_registry"]

logger = logging.getLogger(__name__)

# Statuses of a PATCH response that mean the registry does not take chunked uploads.
_NO_CHUNKS = frozenset({400, 405, 415, 416, 501})
_UPLOAD_TYPE = "application/octet-stream"


def write_registry(
    image: Image, ref: RegistryReference, *, options: RegistryOptions | None = None
) -> Digest:
    """Push ``image`` to ``ref`` and return the digest of the manifest pushed.

    The manifest the image was read with is pushed unchanged when it still describes the
    image exactly, so a copy between registries keeps its digest. Otherwise an OCI manifest is
    built, or a Docker one for an image with Docker foreign layers. With a digest in ``ref``,
    the manifest pushed must have that digest.
    """
    options = options or RegistryOptions.from_environment()
    display = f"docker://{ref}"
    with RegistryClient(ref.registry, ref.api_host, ref.host_name, options) as client:
        pusher = _Pusher(client, ref, display)
        layers = [pusher.push_layer(layer) for layer in image.layers]
        config = pusher.push_bytes(image.config.raw, mediatypes.OCI_CONFIG, "config")
        raw, media_type = _manifest_for(image, config, layers)
        return pusher.push_manifest(raw, media_type)


def _manifest_for(image: Image, config: Descriptor, layers: list[Descriptor]) -> tuple[bytes, str]:
    original = _original_manifest(image)
    if original is not None:
        return original
    if any(layer.media_type == mediatypes.DOCKER_FOREIGN_LAYER for layer in image.layers):
        docker = _docker_manifest(config, layers)
        if docker is not None:
            return docker, mediatypes.DOCKER_MANIFEST
    return oci_manifest(config, layers), mediatypes.OCI_MANIFEST


def _docker_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes | None:
    """Return a Docker schema 2 manifest, or None if a layer has no Docker media type.

    Docker foreign layers keep their type this way. Registries built on distribution 2.x
    accept a missing blob only for that type and demand the blob of an OCI
    non-distributable layer.
    """
    types = {
        mediatypes.OCI_LAYER: mediatypes.DOCKER_LAYER,
        mediatypes.OCI_LAYER_GZIP: mediatypes.DOCKER_LAYER_GZIP,
        mediatypes.OCI_LAYER_NONDISTRIBUTABLE_GZIP: mediatypes.DOCKER_FOREIGN_LAYER,
    }
    if any(layer.media_type not in types for layer in layers):
        return None
    docker_layers = [replace(layer, media_type=types[layer.media_type]) for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST,
        "config": replace(config, media_type=mediatypes.DOCKER_CONFIG).to_json(),
        "layers": [layer.to_json() for layer in docker_layers],
    }
    return dump_json(manifest)


def _original_manifest(image: Image) -> tuple[bytes, str] | None:
    """Return the manifest the image was read with, if it lists exactly its config and layers."""
    if image.manifest_raw is None:
        return None
    try:
        document = json.loads(image.manifest_raw)
        config_digest = document["config"]["digest"]
        layer_digests = [item["digest"] for item in document["layers"]]
        media_type = document.get("mediaType") or mediatypes.OCI_MANIFEST
    except (ValueError, KeyError, TypeError):
        return None
    expected = [str(layer.digest) for layer in image.layers]
    if config_digest != str(image.config.digest) or layer_digests != expected:
        return None
    if media_type not in mediatypes.MANIFEST_TYPES:
        return None
    return image.manifest_raw, media_type


class _Pusher:
    """The blob and manifest requests of one push to one repository."""

    def __init__(self, client: RegistryClient, ref: RegistryReference, display: str):
        self.client = client
        self.ref = ref
        self.display = display
        self.repository = ref.repository
        self.scope = f"repository:{ref.repository}:pull,push"
        self._done: set[Digest] = set()
        # The smallest PATCH the registry accepts, from its OCI-Chunk-Min-Length header.
        self._min_chunk = 0

    # -- layers and config -------------------------------------------------------------------

    def push_layer(self, layer: Layer) -> Descriptor:
        descriptor = oci_layer_descriptor(layer, None)
        if layer.opener is None or (_blobs.is_foreign(layer.media_type) and layer.descriptor.urls):
            # Registries accept foreign layers by URL; their blobs are not uploaded.
            if not (_blobs.is_foreign(layer.media_type) and layer.descriptor.urls):
                raise ImageWriteError(
                    f"{self.display}: {layer.label} has no blob and no URLs to fetch it from, "
                    "so the registry would reject the manifest"
                )
            return descriptor
        opener = layer.opener
        mount_from = None
        if (
            isinstance(opener, RegistryBlobOpener)
            and opener.api_host == self.client.api_host
            and opener.repository != self.repository
        ):
            mount_from = opener.repository
        self._ensure_blob(
            layer.digest,
            layer.size,
            lambda: _blobs.open_verified(layer),  # type: ignore[arg-type,return-value]
            layer.label,
            mount_from,
        )
        return descriptor

    def push_bytes(self, data: bytes, media_type: str, label: str) -> Descriptor:
        digest = Digest.of_bytes(data)
        if digest not in self._done and not self._exists(digest):
            location = self._start_upload()
            self._put_whole(location, digest, data, label)
            self._done.add(digest)
        return Descriptor(media_type, digest, len(data))

    def _ensure_blob(
        self,
        digest: Digest,
        size: int,
        open_stream: Callable[[], BinaryIO],
        label: str,
        mount_from: str | None,
    ) -> None:
        if digest in self._done:
            return
        location = None
        if mount_from is not None:
            location = self._mount(digest, mount_from)
            if location is None:
                self._done.add(digest)
                return
        elif self._exists(digest):
            logger.info("%s: blob %s exists already, skipped", self.display, digest)
            self._done.add(digest)
            return
        self._upload_with_retries(digest, size, open_stream, label, location)
        self._done.add(digest)

    def _exists(self, digest: Digest) -> bool:
        path = f"/v2/{self.repository}/blobs/{digest}"
        with closing(
            self.client.request("HEAD", path, scope=self.scope, follow_redirects=True)
        ) as answer:
            self.client.check_auth(answer, f"blob {digest} of {self.repository}")
            return answer.status_code == 200

    def _mount(self, digest: Digest, source_repository: str) -> str | None:
        """Mount a blob from another repository; return an upload URL if the registry did not."""
        path = f"/v2/{self.repository}/blobs/uploads/"
        scope = f"{self.scope} repository:{source_repository}:pull"
        url = httpx.URL(path).copy_merge_params({"mount": str(digest), "from": source_repository})
        with closing(self.client.request("POST", str(url), scope=scope)) as answer:
            self.client.check_auth(answer, f"a blob mount into {self.repository}")
            if answer.status_code == 201:
                logger.info("%s: blob %s mounted from %s", self.display, digest, source_repository)
                return None
            if answer.status_code == 202:
                # The registry could not mount and opened an upload instead, which is used.
                return self._location(answer)
            raise self._failed(answer, f"mounting blob {digest} from {source_repository}")

    # -- uploads -----------------------------------------------------------------------------

    def _upload_with_retries(
        self,
        digest: Digest,
        size: int,
        open_stream: Callable[[], BinaryIO],
        label: str,
        location: str | None,
    ) -> None:
        attempts = self.client.options.retries + 1
        for attempt in range(1, attempts + 1):
            location = location or self._start_upload()
            try:
                self._upload(location, digest, size, open_stream, label)
                return
            except (RegistryError, httpx.TransportError) as exc:
                self._cancel(location)
                if attempt == attempts or isinstance(exc, RegistryAuthError):
                    if isinstance(exc, httpx.TransportError):
                        raise RegistryError(
                            f"{self.display}: uploading {label} failed ({exc}) after "
                            f"{attempts} attempt(s); try again later"
                        ) from None
                    raise
                logger.info(
                    "%s: uploading %s failed (%s); starting again (attempt %d of %d)",
                    self.display,
                    label,
                    exc,
                    attempt + 1,
                    attempts,
                )
                location = None
            except BaseException:
                self._cancel(location)
                raise

    def _upload(
        self,
        location: str,
        digest: Digest,
        size: int,
        open_stream: Callable[[], BinaryIO],
        label: str,
    ) -> None:
        chunk_size = self.client.options.chunk_size
        with open_stream() as stream:
            if chunk_size is None:
                self._put_stream(location, digest, stream, size, label)
                return
            location_after = self._patch_chunks(location, stream, size, chunk_size, label)
            if location_after is None:
                logger.info(
                    "%s: the registry rejected a chunked upload; uploading %s in one request",
                    self.display,
                    label,
                )
        if location_after is None:
            self._cancel(location)
            with open_stream() as stream:
                self._put_stream(self._start_upload(), digest, stream, size, label)
            return
        self._put_whole(location_after, digest, b"", label)

    def _patch_chunks(
        self, location: str, stream: BinaryIO, size: int, chunk_size: int, label: str
    ) -> str | None:
        """Send the blob in PATCH requests; return the final upload URL, or None if refused."""
        chunk_size = max(chunk_size, self._min_chunk)
        offset = 0
        while offset < size:
            length = min(chunk_size, size - offset)
            headers = {
                "Content-Type": _UPLOAD_TYPE,
                "Content-Range": f"{offset}-{offset + length - 1}",
                "Content-Length": str(length),
            }
            body = _exact_chunks(stream, length, label)
            with closing(
                self.client.request(
                    "PATCH", location, scope=self.scope, headers=headers, content=body
                )
            ) as answer:
                if answer.status_code in _NO_CHUNKS and offset == 0:
                    return None
                if answer.status_code != 202:
                    raise self._failed(
                        answer, f"uploading {label} (bytes {headers['Content-Range']})"
                    )
                location = self._location(answer)
            offset += length
        _check_end(stream, label)
        return location

    def _put_stream(
        self, location: str, digest: Digest, stream: BinaryIO, size: int, label: str
    ) -> None:
        def body() -> Iterator[bytes]:
            yield from _exact_chunks(stream, size, label)
            _check_end(stream, label)

        url = httpx.URL(location).copy_merge_params({"digest": str(digest)})
        headers = {"Content-Type": _UPLOAD_TYPE, "Content-Length": str(size)}
        with closing(
            self.client.request("PUT", str(url), scope=self.scope, headers=headers, content=body())
        ) as answer:
            if answer.status_code != 201:
                raise self._failed(answer, f"uploading {label}")

    def _put_whole(self, location: str, digest: Digest, data: bytes, label: str) -> None:
        url = httpx.URL(location).copy_merge_params({"digest": str(digest)})
        headers = {"Content-Type": _UPLOAD_TYPE}
        with closing(
            self.client.request("PUT", str(url), scope=self.scope, headers=headers, content=data)
        ) as answer:
            if answer.status_code != 201:
                raise self._failed(answer, f"finishing the upload of {label}")

    def _start_upload(self) -> str:
        path = f"/v2/{self.repository}/blobs/uploads/"
        with closing(self.client.request("POST", path, scope=self.scope)) as answer:
            self.client.check_auth(answer, f"uploads to {self.repository}")
            if answer.status_code != 202:
                raise self._failed(answer, f"starting an upload to {self.repository}")
            minimum = answer.headers.get("OCI-Chunk-Min-Length", "")
            if minimum.isdigit():
                self._min_chunk = int(minimum)
            return self._location(answer)

    def _cancel(self, location: str | None) -> None:
        """Delete an unfinished upload, so the registry can free its space (best effort)."""
        if location is None:
            return
        try:
            self.client.request("DELETE", location, scope=self.scope).close()
        except EdgetrimError as exc:
            logger.debug("%s: could not cancel an upload: %s", self.display, exc)

    def _location(self, answer: httpx.Response) -> str:
        location = answer.headers.get("Location")
        if not location:
            raise RegistryError(
                f"{self.display}: the registry returned {answer.status_code} without the "
                "Location header of the upload"
            )
        return str(httpx.URL(self.client.base_url).join(location))

    # -- manifest ----------------------------------------------------------------------------

    def push_manifest(self, raw: bytes, media_type: str) -> Digest:
        digest = Digest.of_bytes(raw)
        reference = self.ref.digest or self.ref.tag or "latest"
        if self.ref.digest is not None and self.ref.digest != str(digest):
            raise InvalidReferenceError(
                f"{self.display}: the manifest to push has digest {digest}, not "
                f"{self.ref.digest}; push by tag instead"
            )
        path = f"/v2/{self.repository}/manifests/{reference}"
        headers = {"Content-Type": media_type}
        with closing(
            self.client.request("PUT", path, scope=self.scope, headers=headers, content=raw)
        ) as answer:
            self.client.check_auth(answer, f"manifests of {self.repository}")
            if answer.status_code not in (200, 201):
                raise self._failed(answer, "pushing the manifest")
            claimed = answer.headers.get("Docker-Content-Digest")
        if claimed and claimed != str(digest):
            raise DigestMismatchError(
                f"{self.display}: the registry stored the manifest as {claimed}, but its "
                f"digest is {digest}; the registry changed the manifest"
            )
        logger.info("%s: pushed manifest %s", self.display, digest)
        return digest

    def _failed(self, answer: httpx.Response, what: str) -> EdgetrimError:
        self.client.check_auth(answer, what)
        summary = error_summary(answer)
        if answer.status_code in (400, 404) and "BLOB_UNKNOWN" in summary:
            return ImageFormatError(
                f"{self.display}: {what} failed: the registry lacks a blob the manifest "
                f"lists ({summary})"
            )
        return RegistryError(
            f"{self.display}: {what} failed with HTTP {answer.status_code}: {summary}"
        )


def _exact_chunks(stream: BinaryIO, length: int, label: str) -> Iterator[bytes]:
    """Yield exactly ``length`` bytes from ``stream`` in pieces of at most 1 MiB."""
    left = length
    while left > 0:
        data = stream.read(min(left, _blobs.CHUNK_SIZE))
        if not data:
            raise DigestMismatchError(
                f"{label}: blob ended {left} bytes before the size its descriptor records"
            )
        left -= len(data)
        yield data


def _check_end(stream: BinaryIO, label: str) -> None:
    """Read past the last byte, which makes the verifying reader check the digest."""
    if stream.read(1):
        raise DigestMismatchError(f"{label}: blob is longer than its descriptor records")
