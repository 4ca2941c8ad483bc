"""The docker-daemon: transport against the real test engine (see tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetrim.errors import DockerEngineError, ImageNotFoundError
from edgetrim.transports import open_image, write_image
from tests.conftest import docker
from tests.transports.synthetic import make_image

pytestmark = pytest.mark.docker


@pytest.fixture
def scratch_tag(docker_host: str) -> Iterator[str]:
    """A tag unique to one test, removed from the engine afterwards."""
    tag = f"edgetrim-transports-test/roundtrip:{uuid.uuid4().hex[:12]}"
    yield tag
    docker("rmi", "--force", tag, check=False)


def test_read_base_image(base_image: str) -> None:
    image_id = docker("image", "inspect", "--format", "{{.Id}}", base_image).stdout.strip()
    with open_image(f"docker-daemon:{base_image}") as image:
        assert str(image.config.digest) == image_id
        assert image.names == [base_image]
        assert len(image.layers) >= 1
        with image.layers[0].read_tar() as stream:
            assert stream.read(512)


def test_read_by_image_id(base_image: str) -> None:
    image_id = docker("image", "inspect", "--format", "{{.Id}}", base_image).stdout.strip()
    with open_image(f"docker-daemon:{image_id}") as image:
        assert str(image.config.digest) == image_id


def test_base_image_roundtrip_runs(base_image: str, scratch_tag: str, tmp_path: Path) -> None:
    archive = tmp_path / "base.tar"
    layout = tmp_path / "layout"
    with open_image(f"docker-daemon:{base_image}") as image:
        config_digest = image.config.digest
        diff_ids = [layer.diff_id for layer in image.layers]
        write_image(image, f"docker-archive:{archive}:{base_image}")
        write_image(image, f"oci:{layout}:bookworm")
    with open_image(f"oci:{layout}:bookworm") as copy:
        assert copy.config.digest == config_digest
        assert [layer.diff_id for layer in copy.layers] == diff_ids
    with open_image(f"docker-archive:{archive}") as copy:
        assert [layer.diff_id for layer in copy.layers] == diff_ids
        loaded = write_image(copy, f"docker-daemon:{scratch_tag}")
    assert loaded == config_digest
    image_id = docker("image", "inspect", "--format", "{{.Id}}", scratch_tag).stdout.strip()
    assert image_id == str(config_digest)
    result = docker("run", "--rm", "--network=none", scratch_tag, "/bin/true", check=False)
    assert result.returncode == 0, result.stderr


def test_missing_image_not_found(docker_host: str) -> None:
    for name in ("edgetrim-transports-test/absent:never", "sha256:" + "ab" * 32):
        with (
            pytest.raises(ImageNotFoundError, match="has no such image"),
            open_image(f"docker-daemon:{name}"),
        ):
            pass


def test_engine_rejection_is_one_line(scratch_tag: str) -> None:
    windows = make_image([], os="windows")
    with pytest.raises(DockerEngineError) as caught:
        write_image(windows, f"docker-daemon:{scratch_tag}")
    message = str(caught.value)
    assert "rejected the image" in message
    assert "windows" in message
    assert "\n" not in message


def test_no_engine_tells_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(DockerEngineError) as caught, open_image("docker-daemon:busybox"):
        pass
    message = str(caught.value)
    assert f"no Docker engine responds at unix://{tmp_path}/absent.sock" in message
    assert "start Docker or set DOCKER_HOST" in message
    assert "\n" not in message
