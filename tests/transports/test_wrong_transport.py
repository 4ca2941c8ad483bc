"""Errors of oci: and oci-archive: on another image format name the transport that reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgetrim.errors import ImageFormatError, ImageNotFoundError, InvalidReferenceError
from edgetrim.transports import open_image

GCR = "go-containerregistry"
# A plain tar containing only README.md, so neither a docker archive nor an OCI archive.
PLAIN_TAR = "dive/test-gzip-image.tar"
OCI_ARCHIVE = "dive/test-oci-gzip-image.tar"
DOCKER_ARCHIVE = f"{GCR}/test_image_1.tar"
# docker save of Docker 25+: manifest.json beside index.json, whose "manifests" is null.
DUAL_ARCHIVE = f"{GCR}/hello-world-v25.tar"
EXTRACTED_DOCKER_ARCHIVE = f"{GCR}/layout/test_image"
# Seven index.json entries with one ref each, for five distinct manifests.
SHARED_REFS_LAYOUT = "containers-image/oci-layout/delete_image_multiple_images"


def error_message(reference: str, error: type[Exception] = ImageFormatError) -> str:
    with pytest.raises(error) as caught, open_image(reference):
        pass
    return str(caught.value)


def test_oci_archive_plain_tar_names_archive(fixtures_dir: Path) -> None:
    message = error_message(f"oci-archive:{fixtures_dir}/{PLAIN_TAR}")
    assert "not an OCI archive because index.json is missing" in message
    assert "folder" not in message
    assert "skopeo" in message


@pytest.mark.parametrize(
    ("fixture", "advice"),
    [
        (OCI_ARCHIVE, "the file is an OCI archive, so read it with oci-archive:"),
        (DOCKER_ARCHIVE, "the file is a docker save archive, so read it with docker-archive:"),
        (DUAL_ARCHIVE, "the file is a docker save archive, so read it with docker-archive:"),
        (PLAIN_TAR, "without index.json or manifest.json, so it is not an image archive"),
        (
            f"{GCR}/test_image_1.tar.gz",
            "read an OCI archive with oci-archive: or a docker save archive with docker-archive:",
        ),
    ],
)
def test_oci_on_file_names_transport(fixtures_dir: Path, fixture: str, advice: str) -> None:
    message = error_message(f"oci:{fixtures_dir}/{fixture}")
    assert "is a file, but oci: reads an OCI layout folder" in message
    assert advice in message


@pytest.mark.parametrize(
    ("fixture", "suggested"), [(OCI_ARCHIVE, "oci-archive"), (DUAL_ARCHIVE, "docker-archive")]
)
def test_suggested_transport_reads_file(fixtures_dir: Path, fixture: str, suggested: str) -> None:
    message = error_message(f"oci:{fixtures_dir}/{fixture}")
    assert f"read it with {suggested}:" in message
    with open_image(f"{suggested}:{fixtures_dir}/{fixture}") as image:
        assert image.layers


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_extracted_folder_suggests_docker_archive(fixtures_dir: Path, transport: str) -> None:
    folder = fixtures_dir / EXTRACTED_DOCKER_ARCHIVE
    message = error_message(f"{transport}:{folder}")
    assert "an extracted docker archive (manifest.json, no index.json)" in message
    assert "not an OCI layout" in message
    assert "read it with docker-archive:" in message
    with open_image(f"docker-archive:{folder}") as image:
        assert image.names == ["bazel/v1/tarball:test_image_1"]


def test_oci_archive_legacy_docker_archive(fixtures_dir: Path) -> None:
    message = error_message(f"oci-archive:{fixtures_dir}/{GCR}/no_manifest.tar")
    assert "a docker archive (repositories, no index.json), not an OCI archive" in message
    assert "read it with docker-archive:" in message


def test_oci_archive_null_manifests_suggests_docker(fixtures_dir: Path) -> None:
    archive = fixtures_dir / DUAL_ARCHIVE
    message = error_message(f"oci-archive:{archive}")
    assert "(index.json): lists no manifests" in message
    assert "; so" not in message
    assert "so it contains no image to read" in message
    assert "read it with docker-archive:" in message
    with open_image(f"docker-archive:{archive}") as image:
        assert len(image.layers) == 1


def test_oci_no_manifests_without_docker_files(fixtures_dir: Path) -> None:
    message = error_message(f"oci:{fixtures_dir}/stereoscope/oci/no_manifests")
    assert message.endswith(
        "(index.json): lists no manifests ('manifests' is empty, null or missing), "
        "so it contains no image to read"
    )


def test_image_count_matches_listed_choices(fixtures_dir: Path) -> None:
    message = error_message(f"oci:{fixtures_dir}/{SHARED_REFS_LAYOUT}", InvalidReferenceError)
    count = re.search(r"the layout contains (\d+) images", message)
    assert count is not None, message
    listed = message.partition("index.json lists them as ")[2]
    images = listed.split(", ")
    assert len(images) == int(count.group(1)) == 5
    assert images[0] == "@0 (latest) or @1 (3.18.3)"
    assert images[1] == "@2 (3) or @3 (3.18)"
    assert images[2:] == ["@4 (3.17.5)", "@5 (3.16.7)", "@6 (1.0.0)"]


def test_index_out_of_range_gives_range(fixtures_dir: Path) -> None:
    message = error_message(f"oci:{fixtures_dir}/{SHARED_REFS_LAYOUT}:@7", ImageNotFoundError)
    assert "no image @7, because index.json lists only @0 to @6: @0 (latest) or @1" in message


def test_grouped_entries_share_one_image(fixtures_dir: Path) -> None:
    """The entries that one listed item joins with "or" open the same image."""
    layout = fixtures_dir / SHARED_REFS_LAYOUT
    with (
        open_image(f"oci:{layout}:@0") as first,
        open_image(f"oci:{layout}:@1") as second,
    ):
        assert first.config.digest == second.config.digest
