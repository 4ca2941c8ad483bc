"""The core image model: digests, descriptors, configs, layers and images."""

from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, ImageConfig, Layer, Platform

__all__ = ["Descriptor", "Digest", "Image", "ImageConfig", "Layer", "Platform"]
