"""Every image and non-image file in the shared fixture folder, opened through the transports.

Each case states the exact outcome. Either the image loads, and then its config digest,
names, layer count and the member count of every layer tar are checked. The tars are read
through Layer.read_tar(), which verifies digest and diff ID. Or opening it raises one
specific error class. The expected values come from the fixture notes and from reading the
archives by hand.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgetrim.errors import (
    DigestMismatchError,
    EdgetrimError,
    ImageFormatError,
    ImageNotFoundError,
    InvalidReferenceError,
)
from edgetrim.image import mediatypes
from edgetrim.image.model import Layer, Platform
from edgetrim.transports import open_image

GCR = "go-containerregistry"
LAYOUT = "go-containerregistry/layout"
CI_LAYOUT = "containers-image/oci-layout"


@dataclass(frozen=True)
class Loads:
    """The image loads: its config digest hex, names and, per layer, the tar's member count.

    A layer entry that is an exception class means that reading that layer raises it.
    """

    config: str
    entries: tuple[int | type[EdgetrimError], ...]
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Raises:
    """Opening the image raises ``error`` (exactly that class) with ``text`` in the message."""

    error: type[EdgetrimError]
    text: str


@dataclass(frozen=True)
class Case:
    """One fixture path, the reference built from it and the expected outcome."""

    fixture: str
    transport: str
    expected: Loads | Raises
    inner: str = ""
    platform: str | None = None

    def reference(self, root: Path) -> str:
        suffix = f":{self.inner}" if self.inner else ""
        return f"{self.transport}:{root / self.fixture}{suffix}"

    @property
    def id(self) -> str:
        suffix = f":{self.inner}" if self.inner else ""
        platform = f"@{self.platform}" if self.platform else ""
        return f"{self.transport}:{self.fixture}{suffix}{platform}"


GCR_IMAGE_1 = "6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e"
GCR_IMAGE_2 = "930705ce23e3b6ed4c08746b6fe880089c864fbaf62482702ae3fdd66b8c7fe9"
DIVE_OCI = "3eaccc100f866490f00ae82727b459a737af031dcf44c791d8aa714a70f24959"
NOT_A_TAR = "not a readable tar archive"
NOT_AN_IMAGE = "neither a docker archive"

IMAGE_CASES = [
    # Docker archives, every layout.
    Case(
        "containers-image/almostempty.tar",
        "docker-archive",
        Loads(
            "9d7f147c0d0c4d4538a04c7ef385809e56eb1aac7bf800fbe976612188025b68",
            (1,),
            ("emptyimage:latest",),
        ),
    ),
    Case(
        "dive/test-docker-image.tar",
        "docker-archive",
        Loads(
            "75ae28b8ebf89b203319069ddcbecdf5c3838503bbebc0d0d85e4b8589c5de3a",
            (415, 1, 4, 3, 3, 3, 3, 4, 2, 2, 4, 2, 3, 2),
            ("dive-test:latest",),
        ),
    ),
    Case(
        "dive/test-kaniko-image.tar",
        "docker-archive",
        Loads(
            "ae16a51058a758c7963b2f9b23d1acfa201ce9cbefc8cb93845f8cd934fb144d",
            (421, 2, 5, 4, 4, 4, 4, 5, 3, 3, 5, 3, 4, 3),
            ("dive-test:kaniko-latest",),
        ),
    ),
    Case(
        f"{GCR}/foreign.tar",
        "docker-archive",
        Loads(
            "53029f61be64b4c3d4e30d4c15ea49cdbd9514e4fbaa7e8d7c0cff91756b40e7",
            (1, 1),
            ("gcr.io/foo/bar:latest",),
        ),
    ),
    Case(
        f"{GCR}/sparse_foreign.tar",
        "docker-archive",
        Loads(
            "53029f61be64b4c3d4e30d4c15ea49cdbd9514e4fbaa7e8d7c0cff91756b40e7",
            (1, ImageFormatError),
            ("gcr.io/foo/bar:latest",),
        ),
    ),
    Case(
        f"{GCR}/hello-world-v25.tar",
        "docker-archive",
        Loads("ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44", (1,)),
    ),
    # The pre-1.10 layout has no config, so the digest is that of the config built from the
    # v1 JSON of its only layer.
    Case(
        f"{GCR}/no_manifest.tar",
        "docker-archive",
        Loads(
            "09fa855f3cb26baa47e9764ed058f18c41f3ab55f0e9da6f001e437b22db0951",
            (4,),
            ("bazel/v1/tarball:test_image",),
        ),
    ),
    Case(
        f"{GCR}/null_manifest.tar",
        "docker-archive",
        Raises(ImageFormatError, "manifest.json): expected a list of images, found null"),
    ),
    Case(
        f"{GCR}/overwritten_file.tar",
        "docker-archive",
        Loads(
            "68f6eb746cdb287658796ba120849bb77be87040a155fbefb89c96f109c0703a",
            (2, 3, 0),
            ("bazel/pkg/v1/mutate:overwritten_file",),
        ),
    ),
    Case(
        f"{GCR}/source_image.tar",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("bazel/pkg/v1/mutate:source_image",)),
    ),
    Case(
        f"{GCR}/source_image_with_empty_layer_history.tar",
        "docker-archive",
        Loads(
            "05b5ec1290589606ce19fabb1fb331f004acd9f618b9b4e813721be1a03a0712",
            (3,),
            ("bazel/pkg/v1/mutate:source_image",),
        ),
    ),
    Case(
        f"{GCR}/test_image_1.tar",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("bazel/v1/tarball:test_image_1",)),
    ),
    Case(
        f"{GCR}/test_image_1.tar.gz",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("bazel/v1/tarball:test_image_1",)),
    ),
    Case(
        f"{GCR}/test_image_2.tar",
        "docker-archive",
        Loads(GCR_IMAGE_2, (3,), ("bazel/v1/tarball:test_image_2",)),
    ),
    Case(
        f"{GCR}/test_load_manifest.tar",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("bazel/v1/tarball:test_image_1",)),
    ),
    Case(
        f"{GCR}/test_bundle.tar",
        "docker-archive",
        Raises(InvalidReferenceError, "@0 (test_image_2); @1 (test_image_1)"),
    ),
    Case(
        f"{GCR}/test_bundle.tar",
        "docker-archive",
        Loads(GCR_IMAGE_2, (3,), ("test_image_2",)),
        inner="test_image_2",
    ),
    Case(
        f"{GCR}/test_bundle.tar",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("test_image_1",)),
        inner="test_image_1:latest",
    ),
    Case(
        f"{GCR}/test_bundle.tar",
        "docker-archive",
        Raises(ImageNotFoundError, "no image named test_image_3:latest"),
        inner="test_image_3",
    ),
    Case(
        f"{GCR}/test_link.tar",
        "docker-archive",
        Raises(InvalidReferenceError, "bazel/v1/tarball:test_image_3"),
    ),
    Case(
        f"{GCR}/test_link.tar",
        "docker-archive",
        Loads(
            "d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4",
            (3, 1),
            ("bazel/v1/tarball:test_image_3",),
        ),
        inner="bazel/v1/tarball:test_image_3",
    ),
    Case(
        f"{GCR}/test_link.tar",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("bazel/v1/tarball:test_image_1",)),
        inner="@0",
    ),
    Case(
        f"{GCR}/whiteout_dir.tar",
        "docker-archive",
        Loads(
            "92f1e3d53acdc7e137e73869abc4e87aba6614440a31723423790ca0d5db9111",
            (2, 2, 1, 2),
            ("localhost:5000/whiteout:latest",),
        ),
    ),
    Case(
        f"{GCR}/whiteout_image.tar",
        "docker-archive",
        Loads(
            "decb630649c3e1256345d416b228d6c3ceb387a55120ad44dc3ec992976d28b9",
            (3, 2, 0),
            ("bazel/pkg/v1/mutate:whiteout_image",),
        ),
    ),
    # An archive extracted into a folder reads like the archive.
    Case(
        f"{LAYOUT}/test_image",
        "docker-archive",
        Loads(GCR_IMAGE_1, (3,), ("bazel/v1/tarball:test_image_1",)),
    ),
    Case(
        f"{LAYOUT}/test_image",
        "oci",
        Raises(ImageFormatError, "an extracted docker archive (manifest.json, no index.json)"),
    ),
    # OCI layouts inside tar files load through docker-archive:, as docker load reads them.
    Case(
        "dive/test-oci-estargz-image.tar",
        "docker-archive",
        Loads("5c153971f5feeb018fab88c379f94ef9171ba1990163d32852fd27bf55ed5b74", (1,)),
    ),
    Case("dive/test-oci-gzip-image.tar", "docker-archive", Loads(DIVE_OCI, (1,))),
    Case("dive/test-oci-uncompressed-image.tar", "docker-archive", Loads(DIVE_OCI, (1,))),
    Case("dive/test-oci-zstd-image.tar", "docker-archive", Loads(DIVE_OCI, (1,))),
    Case(
        "dive/test-oci-zstd-image.tar",
        "docker-archive",
        Raises(ImageNotFoundError, "the image is for linux/arm64"),
        platform="linux/amd64",
    ),
    Case(
        "dive/test-oci-zstd-image.tar",
        "oci",
        Raises(ImageFormatError, "is a file, but oci: reads an OCI layout folder"),
    ),
    Case(
        "stereoscope/oci/valid-oci.tar",
        "docker-archive",
        Loads(
            "61ee19e869a529075634f762c1eb191962777e0803598758cbf076edfadfb046",
            (1,),
            ("sample:latest",),
        ),
    ),
    # The manifest blob in file.tar is empty, so its size and digest do not match.
    Case(
        "stereoscope/oci/file.tar",
        "docker-archive",
        Raises(DigestMismatchError, "blob has 0 bytes but its descriptor records 424"),
    ),
    # OCI layout folders from go-containerregistry.
    Case(
        f"{LAYOUT}/test_gc_image_unknown_mediatype",
        "oci",
        Raises(ImageFormatError, "manifest blob is missing"),
    ),
    Case(
        f"{LAYOUT}/test_gc_index",
        "oci",
        Raises(InvalidReferenceError, "@0 (1), @1 (3), @2 (4)"),
    ),
    Case(f"{LAYOUT}/test_gc_index", "oci", Loads(GCR_IMAGE_1, (3,), ("1",)), inner="1"),
    Case(f"{LAYOUT}/test_gc_index", "oci", Loads(GCR_IMAGE_1, (3,), ("4",)), inner="4"),
    Case(
        f"{LAYOUT}/test_index",
        "oci",
        Raises(InvalidReferenceError, "@0 (1), @1 (2), @2 (3), @3 (4)"),
    ),
    # Ref 1 is a Docker manifest listed under the OCI manifest type, ref 2 one listed under
    # the odd descriptor type, ref 3 an OCI index and ref 4 a Docker manifest list.
    Case(f"{LAYOUT}/test_index", "oci", Loads(GCR_IMAGE_1, (3,), ("1",)), inner="1"),
    Case(f"{LAYOUT}/test_index", "oci", Loads(GCR_IMAGE_2, (3,), ("2",)), inner="2"),
    Case(f"{LAYOUT}/test_index", "oci", Loads(GCR_IMAGE_1, (3,), ("3",)), inner="3"),
    Case(f"{LAYOUT}/test_index", "oci", Loads(GCR_IMAGE_1, (3,), ("4",)), inner="4"),
    Case(
        f"{LAYOUT}/test_index",
        "oci",
        Raises(ImageNotFoundError, "no image with ref '5'"),
        inner="5",
    ),
    Case(
        f"{LAYOUT}/test_index_media_type",
        "oci",
        Raises(ImageFormatError, "'application/vnd.cncf.helm.config.v1+json' is not a container"),
    ),
    Case(
        f"{LAYOUT}/test_index_one_image",
        "oci",
        Loads("381d958b555884ba59574ab5c066e9f6116b5aec3567675aa13bec63331f0810", (1,)),
    ),
    # containers/image layouts: their layer blobs are 33-byte placeholder texts, so loading
    # works and reading a layer fails its diff ID check.
    Case(
        f"{CI_LAYOUT}/delete_image_multiple_images",
        "oci",
        Raises(InvalidReferenceError, "the layout contains 5 images"),
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_multiple_images",
        "oci",
        Loads(
            "913cf3a39d377faf89ed388ad913a318a390488c9f34c46e43424795cdabffe8",
            (DigestMismatchError,),
            ("latest",),
        ),
        inner="latest",
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_multiple_images",
        "oci",
        Loads(
            "df11bc189adeb50dadb3291a3a7f2c34b36e0efdba0df70f2c8a2d761b215cde",
            (DigestMismatchError,),
            ("3.17.5",),
        ),
        inner="3.17.5",
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_multiple_images",
        "oci",
        Loads(
            "7ffdfe7d276286b39a203dcc247949cf47c91d2d5e10a53a675c0962ed9e4402",
            (DigestMismatchError,),
            ("3.16.7",),
        ),
        inner="3.16.7",
        platform="linux/386",
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_multiple_images",
        "oci",
        Raises(ImageNotFoundError, "no image for platform linux/arm64; the index has linux/amd64"),
        inner="3.16.7",
        platform="linux/arm64",
    ),
    # The manifest of 1.0.0 records 585 bytes for a config blob of 584 bytes.
    Case(
        f"{CI_LAYOUT}/delete_image_multiple_images",
        "oci",
        Raises(DigestMismatchError, "blob has 584 bytes but its descriptor records 585"),
        inner="1.0.0",
    ),
    # Here the manifest records 585 bytes for a config blob of 740 bytes.
    Case(
        f"{CI_LAYOUT}/delete_image_only_one_image",
        "oci",
        Raises(DigestMismatchError, "larger than the 585 bytes its descriptor records"),
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_shared_blobs_dir",
        "oci",
        Raises(ImageFormatError, "manifest blob is missing"),
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_two_identical_references",
        "oci",
        Raises(ImageFormatError, "2 different manifests carry ref '1.0.0'"),
        inner="1.0.0",
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_two_identical_references",
        "oci",
        Loads(
            "a527179158cd5cebc11c152b8637b47ce96c838ba2aa0de66d14f45cedc11423",
            (DigestMismatchError,),
            ("1.0.0",),
        ),
        inner="@0",
    ),
    Case(
        f"{CI_LAYOUT}/delete_image_two_identical_references",
        "oci",
        Loads(
            "ce229a4eb5797ecd3a3a1846613b6b49811f79e38b5b0ce666268ba4b6c68e41",
            (DigestMismatchError,),
            ("1.0.0",),
        ),
        inner="@1",
    ),
    Case(f"{CI_LAYOUT}/files", "oci", Raises(ImageFormatError, "index.json is missing")),
    Case(f"{CI_LAYOUT}/manifest", "oci", Raises(ImageFormatError, "manifest blob is missing")),
    Case(
        f"{CI_LAYOUT}/name_lookups",
        "oci",
        Raises(InvalidReferenceError, "@3 (d), @4 (invalid-mime)"),
    ),
    Case(
        f"{CI_LAYOUT}/name_lookups",
        "oci",
        Raises(ImageFormatError, "manifest blob is missing"),
        inner="invalid-mime",
    ),
    # A flat index.json with one unnamed manifest per platform selects by platform.
    Case(
        f"{CI_LAYOUT}/two_images_manifest",
        "oci",
        Raises(
            ImageFormatError, "5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"
        ),
    ),
    Case(
        f"{CI_LAYOUT}/two_images_manifest",
        "oci",
        Raises(ImageNotFoundError, "the index has linux/ppc64le, linux/amd64"),
        platform="linux/arm64",
    ),
    # stereoscope layouts.
    Case(
        "stereoscope/oci/invalid_file",
        "oci",
        Raises(ImageFormatError, "index.json): not valid JSON"),
    ),
    Case(
        "stereoscope/oci/multiplatform_oci_dir",
        "oci",
        Loads(
            "549248a7ac95478805d9248e4ffdc778fc2404257d8c071848746e0100e08099", (3,), ("latest",)
        ),
        platform="linux/amd64",
    ),
    Case(
        "stereoscope/oci/multiplatform_oci_dir",
        "oci",
        Loads(
            "3cd6022503cef24ee80dc156bf171c8d1d588c2ea1904bcd8ef2728c36341594", (3,), ("latest",)
        ),
        platform="linux/arm64",
    ),
    Case(
        "stereoscope/oci/no_manifests",
        "oci",
        Raises(ImageFormatError, "index.json): lists no manifests"),
    ),
    Case(
        "stereoscope/oci/valid_manifest",
        "oci",
        Raises(DigestMismatchError, "blob has 0 bytes but its descriptor records 424"),
    ),
    Case(
        "stereoscope/oci/valid_oci_dir",
        "oci",
        Loads(
            "61ee19e869a529075634f762c1eb191962777e0803598758cbf076edfadfb046", (1,), ("latest",)
        ),
    ),
]

# Files that are not images: plain layer tars, bare JSON documents, compressed samples.
NOT_IMAGE_CASES = (
    [
        Case(
            f"dive/test-{kind}-image.tar", "docker-archive", Raises(ImageFormatError, NOT_AN_IMAGE)
        )
        for kind in ("gzip", "zstd", "uncompressed", "estargz")
    ]
    + [
        Case(f"{GCR}/content.tar", "docker-archive", Raises(ImageFormatError, NOT_AN_IMAGE)),
        Case(f"{GCR}/content.tar.zst", "docker-archive", Raises(ImageFormatError, NOT_AN_IMAGE)),
        Case(
            f"{LAYOUT}/test_image/555b1001d54ed229f56990845856f080b0707348b26b3aa85aaf58d5570cdee0/layer.tar",
            "docker-archive",
            Raises(ImageFormatError, NOT_AN_IMAGE),
        ),
        Case(f"{LAYOUT}/README.md", "docker-archive", Raises(ImageFormatError, NOT_A_TAR)),
        Case(
            "stereoscope/docker/empty-file", "docker-archive", Raises(ImageFormatError, NOT_A_TAR)
        ),
    ]
    + [
        Case(
            f"containers-image/compression/Hello.{kind}",
            "docker-archive",
            Raises(ImageFormatError, NOT_A_TAR),
        )
        for kind in ("bz2", "gz", "uncompressed", "xz", "zst")
    ]
    + [
        Case(f"{folder}/{name}", "docker-archive", Raises(ImageFormatError, NOT_A_TAR))
        for folder, names in {
            "containers-image/manifest-testdata": (
                "non-json.manifest.json",
                "oci1.index.everything.json",
                "oci1.index.zstd-selection.json",
                "oci1.index.zstd-selection2.json",
                "oci1index.json",
                "ocilist-variants.json",
                "ociv1.artifact.json",
                "ociv1.image.index.json",
                "ociv1.manifest.json",
                "ociv1nomime.artifact.json",
                "ociv1nomime.image.index.json",
                "ociv1nomime.manifest.json",
                "schema2-to-schema1-by-docker.json",
                "schema2list-variants.json",
                "schema2list.json",
                "unknown-version.manifest.json",
                "v2list.everything.json",
                "v2list.manifest.json",
                "v2s1-invalid-signatures.manifest.json",
                "v2s1-unsigned.manifest.json",
                "v2s1.manifest.json",
                "v2s2.manifest.json",
                "v2s2nomime.manifest.json",
            ),
            "stereoscope/docker": (
                "engine-config.json",
                "no-descriptors.json",
                "single-blank-manifest.json",
                "valid-multi-manifest-with-tags.json",
            ),
        }.items()
        for name in names
    ]
    + [
        Case(
            "containers-image/manifest-testdata",
            "oci",
            Raises(ImageFormatError, "index.json is missing"),
        ),
        Case("no/such/archive.tar", "docker-archive", Raises(ImageNotFoundError, "no such file")),
        Case("no/such/layout", "oci", Raises(ImageNotFoundError, "no such folder")),
    ]
)

ALL_CASES = IMAGE_CASES + NOT_IMAGE_CASES


def read_layer_entries(layer: Layer) -> int:
    """Read a layer's whole tar through read_tar(), which verifies it, and count its members."""
    with layer.read_tar() as stream:
        data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        return len(archive.getmembers())


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.id for case in ALL_CASES])
def test_fixture_outcome(case: Case, fixtures_dir: Path) -> None:
    reference = case.reference(fixtures_dir)
    platform = Platform.parse(case.platform) if case.platform else None
    if isinstance(case.expected, Raises):
        with pytest.raises(EdgetrimError) as caught, open_image(reference, platform=platform):
            pass
        assert type(caught.value) is case.expected.error, str(caught.value)
        message = str(caught.value)
        assert case.expected.text in message
        assert "\n" not in message
        assert case.fixture.split("/")[0] in message or "no/such" in message
        return
    expected = case.expected
    with open_image(reference, platform=platform) as image:
        assert image.config.digest.hex == expected.config
        assert len(image.layers) == len(expected.entries)
        assert tuple(image.names) == expected.names
        for layer, entries in zip(image.layers, expected.entries, strict=True):
            if isinstance(entries, int):
                assert read_layer_entries(layer) == entries, layer.label
            else:
                with pytest.raises(EdgetrimError) as caught:
                    read_layer_entries(layer)
                assert type(caught.value) is entries, str(caught.value)


def test_table_covers_every_fixture(fixtures_dir: Path) -> None:
    covered = {case.fixture for case in ALL_CASES}
    uncovered = []
    for path in sorted(fixtures_dir.rglob("*")):
        relative = path.relative_to(fixtures_dir).as_posix()
        if path.is_dir() or relative == "INDEX.md":
            continue
        parts = relative.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if not prefixes & covered:
            uncovered.append(relative)
    assert uncovered == []


def test_foreign_layer_without_blob_loads(fixtures_dir: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/{GCR}/sparse_foreign.tar") as image:
        foreign = image.layers[1]
        assert foreign.opener is None
        assert foreign.media_type == mediatypes.DOCKER_FOREIGN_LAYER
        assert foreign.descriptor.urls == ("example.com",)
        assert foreign.size == 701
        with pytest.raises(ImageFormatError, match="foreign layer is not in the image"):
            read_layer_entries(foreign)


def test_foreign_layer_with_blob_keeps_urls(fixtures_dir: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/{GCR}/foreign.tar") as image:
        foreign = image.layers[1]
        assert foreign.opener is not None
        assert foreign.media_type == mediatypes.DOCKER_FOREIGN_LAYER
        assert foreign.descriptor.urls == ("example.com",)
        assert str(foreign.digest).endswith(
            "015b6ec6d1bc15e26c868d36ef75577c7a0405609ea9abc028b69204b56e7325"
        )


def test_gzip_layers_are_hashed(fixtures_dir: Path) -> None:
    # go-containerregistry names each layer file after the sha256 of its gzip bytes.
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-kaniko-image.tar") as image:
        for layer in image.layers:
            assert layer.media_type == mediatypes.DOCKER_LAYER_GZIP
            assert f"({layer.digest.hex}.tar.gz)" in layer.label
            assert layer.digest != layer.diff_id


def test_uncompressed_layer_digest_is_diff_id(fixtures_dir: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/dive/test-docker-image.tar") as image:
        for layer in image.layers:
            assert layer.media_type == mediatypes.DOCKER_LAYER
            assert layer.digest == layer.diff_id


def test_layer_sources_describing_other_blob_ignored(fixtures_dir: Path) -> None:
    # LayerSources of test_image_2 describe a 165-byte gzip blob, but the archive stores the
    # uncompressed tar.
    reference = f"docker-archive:{fixtures_dir}/{GCR}/test_bundle.tar:test_image_2"
    with open_image(reference) as image:
        layer = image.layers[0]
        assert layer.media_type == mediatypes.DOCKER_LAYER
        assert layer.size == 10240
        assert layer.digest == layer.diff_id


def test_docker_25_layer_type_from_layer_sources(fixtures_dir: Path) -> None:
    with open_image(f"docker-archive:{fixtures_dir}/{GCR}/hello-world-v25.tar") as image:
        assert image.layers[0].media_type == mediatypes.OCI_LAYER


def test_oci_layer_types_kept(fixtures_dir: Path) -> None:
    expected = {
        "zstd": mediatypes.OCI_LAYER_ZSTD,
        "gzip": mediatypes.OCI_LAYER_GZIP,
        "uncompressed": mediatypes.OCI_LAYER,
    }
    for kind, media_type in expected.items():
        reference = f"docker-archive:{fixtures_dir}/dive/test-oci-{kind}-image.tar"
        with open_image(reference) as image:
            assert image.layers[0].media_type == media_type
            assert image.manifest_raw is not None


def test_symlinked_layer_shares_blob(fixtures_dir: Path) -> None:
    archive = f"docker-archive:{fixtures_dir}/{GCR}/test_link.tar"
    with open_image(f"{archive}:@0") as first, open_image(f"{archive}:@1") as second:
        assert second.layers[0].diff_id == first.layers[0].diff_id
        assert "b159278ac0c8" in second.layers[0].label


def test_names_match_in_short_and_long_form(fixtures_dir: Path) -> None:
    archive = f"docker-archive:{fixtures_dir}/containers-image/almostempty.tar"
    for name in ("emptyimage", "emptyimage:latest", "docker.io/library/emptyimage:latest"):
        with open_image(f"{archive}:{name}") as image:
            assert image.names == ["emptyimage:latest"]


def test_compressed_archive_temp_file_removed(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with open_image(f"docker-archive:{fixtures_dir}/{GCR}/test_image_1.tar.gz") as image:
        assert list(tmp_path.iterdir()) != []
        assert read_layer_entries(image.layers[0]) == 3
    assert list(tmp_path.iterdir()) == []
