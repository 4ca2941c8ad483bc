"""File names and annotations of the OCI image layout, shared by its reader and writer."""

from __future__ import annotations

from edgetrim.image.digest import Digest

INDEX_FILE = "index.json"
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
# containerd records the full image name here, such as docker.io/library/alpine:latest.
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
# Files of a docker save archive, which the OCI readers look for to suggest docker-archive:.
DOCKER_MANIFEST_FILE = "manifest.json"
DOCKER_REPOSITORIES_FILE = "repositories"


def blob_path(digest: Digest) -> str:
    """Return the path of a blob inside a layout, such as ``blobs/sha256/<hex>``."""
    return f"blobs/{digest.algorithm}/{digest.hex}"
