"""Parsing of image references in skopeo's transport syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetrim.errors import ImageNotFoundError, InvalidReferenceError
from edgetrim.transports import Transport, parse_reference
from edgetrim.transports.reference import SUPPORTED_FORMS, check_source, normalize_docker_name

IMAGE_ID = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "transport", "path", "name", "index"),
    [
        ("docker-archive:/tmp/a.tar", Transport.DOCKER_ARCHIVE, "/tmp/a.tar", None, None),
        ("docker-archive:a.tar:busybox", Transport.DOCKER_ARCHIVE, "a.tar", "busybox:latest", None),
        (
            "docker-archive:a.tar:localhost:5000/x/y:v1",
            Transport.DOCKER_ARCHIVE,
            "a.tar",
            "localhost:5000/x/y:v1",
            None,
        ),
        (
            "docker-archive:a.tar:docker.io/library/busybox:1.36",
            Transport.DOCKER_ARCHIVE,
            "a.tar",
            "busybox:1.36",
            None,
        ),
        ("docker-archive:a.tar:@2", Transport.DOCKER_ARCHIVE, "a.tar", None, 2),
        ("oci:/srv/layout", Transport.OCI, "/srv/layout", None, None),
        ("oci:layout:sample:latest", Transport.OCI, "layout", "sample:latest", None),
        ("oci:layout:v1.0--rc/x", Transport.OCI, "layout", "v1.0--rc/x", None),
        ("oci:layout:@0", Transport.OCI, "layout", None, 0),
        ("docker-daemon:busybox", Transport.DOCKER_DAEMON, None, "busybox:latest", None),
        ("docker-daemon:gcr.io/a/b:tag", Transport.DOCKER_DAEMON, None, "gcr.io/a/b:tag", None),
        (f"docker-daemon:{IMAGE_ID}", Transport.DOCKER_DAEMON, None, IMAGE_ID, None),
    ],
)
def test_parse_valid(text, transport, path, name, index) -> None:
    reference = parse_reference(text)
    assert reference.transport is transport
    assert reference.path == (Path(path) if path else None)
    assert reference.name == name
    assert reference.source_index == index
    assert str(reference) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty image reference"),
        ("/tmp/image.tar", "names no transport"),
        ("ftp:/tmp/x", "unknown transport 'ftp'"),
        ("containers-storage:busybox", "transport containers-storage: is not supported yet"),
        ("dir:/tmp/x", "transport dir: is not supported yet"),
        ("docker-archive:", "the archive path is empty"),
        ("docker-archive:a.tar:Busybox", "not a valid image name"),
        ("docker-archive:a.tar:busybox:bad tag", "not a valid tag"),
        ("docker-archive:a.tar:busybox@sha256:" + "ab" * 32, "digest references"),
        ("oci:", "the layout folder is empty"),
        ("oci:layout:bad ref", "not a valid OCI ref name"),
        ("docker-daemon:", "the image name is empty"),
        ("docker-daemon:sha256:abc", "64 lowercase hex digits"),
    ],
)
def test_parse_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    if text:
        assert repr(text) in message
    if "not supported yet" not in reason:
        assert SUPPORTED_FORMS in message


def test_image_id_flag() -> None:
    assert parse_reference(f"docker-daemon:{IMAGE_ID}").is_image_id
    assert not parse_reference("docker-daemon:busybox").is_image_id


def test_normalize_keeps_registry_port() -> None:
    assert normalize_docker_name("localhost:5000/whiteout") == "localhost:5000/whiteout:latest"
    assert normalize_docker_name("docker.io/busybox") == "busybox:latest"
    assert normalize_docker_name("quay.io/org/app:v2") == "quay.io/org/app:v2"


@pytest.mark.parametrize(
    ("text", "suggestions"),
    [
        ("docker-archve:/tmp/image.tar", ["docker-archive:/tmp/image.tar"]),
        ("Docker-Archive:image.tar:app:1", ["docker-archive:image.tar:app:1"]),
        ("docker-deamon:python-http:latest", ["docker-daemon:python-http:latest"]),
        ("oci-archve:image.tar:v1", ["oci-archive:image.tar:v1"]),
        ("oc:/srv/layout", ["oci:/srv/layout"]),
        ("dokcer://127.0.0.1:5000/app:1", ["docker://127.0.0.1:5000/app:1"]),
        ("dokcer:127.0.0.1:5000/app:1", ["docker://127.0.0.1:5000/app:1"]),
        ("python-http:latest", ["docker-daemon:python-http:latest"]),
        ("/tmp/image.tar", ["docker-archive:/tmp/image.tar", "oci-archive:/tmp/image.tar"]),
        ("busybox", ["docker-daemon:busybox"]),
        ("/tmp/folder", []),
        ("ftp:/tmp/x", []),
    ],
)
def test_transport_suggestion_parses(text: str, suggestions: list[str]) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    message = str(caught.value)
    if suggestions:
        assert f"did you mean {' or '.join(suggestions)}? " in message
    else:
        assert "did you mean" not in message
    for suggestion in suggestions:
        # A suggestion replaces the mistyped prefix, so it parses and names the same path.
        reference = parse_reference(suggestion)
        assert str(reference) == suggestion


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        ("docker-archive", "no such file; check the path of the docker archive"),
        ("oci-archive", "no such file; check the path of the OCI archive"),
        ("oci", "no such folder; check the path of the OCI layout"),
    ],
)
def test_check_source_missing_path(tmp_path: Path, transport: str, message: str) -> None:
    text = f"{transport}:{tmp_path / 'absent'}"
    with pytest.raises(ImageNotFoundError) as caught:
        check_source(text)
    assert str(caught.value) == f"{text}: {message}"


def test_check_source_existing_path(tmp_path: Path) -> None:
    (tmp_path / "image.tar").write_bytes(b"")
    assert check_source(f"docker-archive:{tmp_path / 'image.tar'}").path == tmp_path / "image.tar"
    assert check_source(f"oci:{tmp_path}").path == tmp_path
    # References without a local path are checked only when the image is read.
    assert check_source("docker-daemon:busybox").path is None
    assert check_source("docker://127.0.0.1:5000/app:1").path is None
