"""The CI gate on real images: it fails the bloated example and passes its minimized form."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.runtime]

RULES = ["--fail-if", "likely_unused_bytes > 50%", "--fail-if", "toolchain_bytes > 1MB"]


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def images(build_image, runtime_tools, tmp_path_factory) -> tuple[str, str]:
    tag = build_image(REPO / "examples" / "batch-job", "edgetrim-test/batch-job:latest")
    archive = tmp_path_factory.mktemp("gate") / "batch-job-min.tar"
    result = edgetrim("minimize", f"docker-daemon:{tag}", f"docker-archive:{archive}")
    assert result.returncode == 0, result.stderr
    return f"docker-daemon:{tag}", f"docker-archive:{archive}"


def test_gate_fails_bloated_image(images):
    original, _ = images
    result = edgetrim("analyze", original, *RULES)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "likely_unused_bytes > 50%" in result.stderr
    assert "toolchain_bytes > 1MB" in result.stderr


def test_gate_passes_minimized_image(images):
    _, minimized = images
    result = edgetrim("analyze", minimized, *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_report_names_toolchain(images):
    original, _ = images
    result = edgetrim("analyze", original)
    assert result.returncode == 0, result.stderr
    assert "gcc-12" in result.stdout
    assert "toolchain" in result.stdout
