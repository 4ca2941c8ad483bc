"""Every error a user can cause: one line naming the input, exit code 2, nothing at DEST."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=600
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgetrim: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def rewrite_layer(source: Path, target: Path, change) -> None:
    """Copy a docker archive, passing the bytes of its first layer.tar through ``change``."""
    with tarfile.open(source) as original, tarfile.open(target, "w") as copy:
        changed = False
        for member in original.getmembers():
            data = original.extractfile(member).read() if member.isfile() else None
            if data is not None and member.name.endswith("layer.tar") and not changed:
                data = change(data)
                member.size = len(data)
                changed = True
            copy.addfile(member, None if data is None else io.BytesIO(data))


def test_missing_path(tmp_path):
    dest = tmp_path / "out.tar"
    result = edgetrim(
        "minimize", f"docker-archive:{tmp_path / 'nope.tar'}", f"docker-archive:{dest}"
    )
    assert_clean_error(result, "nope.tar")
    assert not dest.exists()


def test_tar_that_is_not_an_image(fixtures_dir, tmp_path):
    dest = tmp_path / "out.tar"
    source = fixtures_dir / "dive" / "test-gzip-image.tar"
    result = edgetrim("minimize", f"docker-archive:{source}", f"docker-archive:{dest}")
    assert_clean_error(result, "test-gzip-image.tar")
    assert not dest.exists()


def test_unknown_transport(tmp_path):
    result = edgetrim("minimize", "ftp:image.tar", f"docker-archive:{tmp_path / 'out.tar'}")
    assert_clean_error(result, "ftp:image.tar")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(
            lambda data: data[:600] + bytes([data[600] ^ 0xFF]) + data[601:], id="flipped-byte"
        ),
    ],
)
def test_corrupt_layer(fixtures_dir, tmp_path, change):
    source = tmp_path / "corrupt.tar"
    rewrite_layer(fixtures_dir / "go-containerregistry" / "test_image_1.tar", source, change)
    dest = tmp_path / "out.tar"
    result = edgetrim("minimize", f"docker-archive:{source}", f"docker-archive:{dest}")
    assert_clean_error(result, "layer")
    assert not dest.exists()
    assert not list(tmp_path.glob("out.tar*"))


def test_bad_probe_option(tmp_path):
    result = edgetrim(
        "minimize",
        "docker-archive:x.tar",
        f"docker-archive:{tmp_path / 'o.tar'}",
        "--http-probe",
        "web",
    )
    assert_clean_error(result, "--http-probe")


@pytest.mark.docker
def test_missing_entrypoint(build_image, base_image, runtime_tools, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f'FROM {base_image}\nENTRYPOINT ["/opt/app/run-me"]\n')
    tag = build_image(context, "edgetrim-test/no-entrypoint:latest")
    dest = tmp_path / "out.tar"
    result = edgetrim("minimize", f"docker-daemon:{tag}", f"docker-archive:{dest}", "--cmd-probe")
    assert_clean_error(
        result, "/opt/app/run-me", "docker-daemon:edgetrim-test/no-entrypoint:latest"
    )
    assert not dest.exists()


@pytest.mark.docker
def test_missing_daemon_image(docker_host, tmp_path):
    result = edgetrim(
        "minimize",
        "docker-daemon:edgetrim-test/never-built:latest",
        f"docker-archive:{tmp_path / 'o.tar'}",
    )
    assert_clean_error(result, "edgetrim-test/never-built")


def test_dest_folder_checked_first(fixtures_dir, tmp_path):
    source = fixtures_dir / "go-containerregistry" / "test_image_1.tar"
    dest = tmp_path / "missing-folder" / "out.tar"
    result = edgetrim("minimize", f"docker-archive:{source}", f"docker-archive:{dest}")
    assert_clean_error(result, "missing-folder", "does not exist")


@pytest.mark.parametrize(
    ("reference", "hint"),
    [
        ("python-http:latest", "did you mean docker-daemon:python-http:latest?"),
        ("/tmp/image.tar", "did you mean docker-archive:/tmp/image.tar"),
    ],
)
def test_missing_transport_hint(reference, hint):
    result = edgetrim("analyze", reference)
    assert_clean_error(result, hint)
