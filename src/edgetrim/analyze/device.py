"""Measure the images that one device stores together.

Docker (overlay2) and containerd unpack a layer once per chain ID, the identity of the layer
together with every layer below it, and not once per layer digest. So a layer that two images
share on the same base is stored once, but the same layer on two different bases is stored
twice. ``tests/analyze/test_device_engine.py`` checks this against a running Docker engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetrim.analyze.result import ImageAnalysis

# A file's identity across images: path, content digest, mode, owner and group.
FileIdentity = tuple[str, str, int, int, int]


@dataclass
class DeviceSet:
    """Sizes of a set of images on one device; every figure counts regular-file content bytes.

    ``total_bytes`` adds each image's stored content as if it were alone. ``device_bytes`` is
    what the engine stores today: the content of each distinct chain ID once.
    ``identical_bytes`` is the content of files that two or more images have with the same
    path, content and metadata, counted once. ``lower_bound_bytes`` is the content of every
    visible file, with identical files stored once and hidden copies dropped.
    """

    images: list[str]
    total_bytes: int
    device_bytes: int
    layers: int
    unique_layers: int
    identical_files: int
    identical_bytes: int
    lower_bound_bytes: int

    @property
    def saving_bytes(self) -> int:
        """Bytes a device would free by storing identical files once instead of per chain ID."""
        return max(self.device_bytes - self.lower_bound_bytes, 0)


def analyze_device_set(analyses: list[ImageAnalysis]) -> DeviceSet:
    """Combine the analyses of the images that run on one device."""
    chains: dict[str, int] = {}
    layer_count = 0
    for analysis in analyses:
        for layer in analysis.layers:
            layer_count += 1
            chains.setdefault(layer.chain_id, layer.content_bytes)

    holders: dict[FileIdentity, set[int]] = {}
    sizes: dict[FileIdentity, int] = {}
    for number, analysis in enumerate(analyses):
        for identity, size in _identities(analysis).items():
            holders.setdefault(identity, set()).add(number)
            sizes[identity] = size
    shared = [identity for identity, images in holders.items() if len(images) > 1]
    return DeviceSet(
        images=[analysis.source for analysis in analyses],
        total_bytes=sum(analysis.waste.stored_bytes for analysis in analyses),
        device_bytes=sum(chains.values()),
        layers=layer_count,
        unique_layers=len(chains),
        identical_files=len(shared),
        identical_bytes=sum(sizes[identity] for identity in shared),
        lower_bound_bytes=sum(sizes.values()),
    )


def _identities(analysis: ImageAnalysis) -> dict[FileIdentity, int]:
    """Return the identity and size of each visible inode; a hardlinked inode is one file."""
    found: dict[FileIdentity, int] = {}
    seen_copies: set[int] = set()
    for item in analysis.final_files:
        if item.copy in seen_copies:
            continue
        seen_copies.add(item.copy)
        found[(item.path, item.digest, item.mode, item.uid, item.gid)] = item.size
    return found
