"""Shared test fixtures: the fixture folder, the private Docker engine and the Debian base image.

Docker, runc and strace are installed and started by .ci/run, so in CI (CI=true) a missing
engine fails the tests instead of skipping them. Outside CI they skip with the command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("EDGETRIM_FIXTURES", REPO.parent / "shared" / "fixtures"))
DOCKER_SOCKET = "unix:///run/edgetrim-docker/docker.sock"
BASE_IMAGE = "edgetrim/debian:bookworm"
IN_CI = os.environ.get("CI") == "true"


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The read-only folder of real image fixtures from public projects."""
    if not FIXTURES.is_dir():
        pytest.skip(f"fixture folder {FIXTURES} is absent; set EDGETRIM_FIXTURES to its path")
    return FIXTURES


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """The DOCKER_HOST of the private engine that scripts/start-docker.sh starts."""
    host = os.environ.get("DOCKER_HOST", DOCKER_SOCKET)
    env = {**os.environ, "DOCKER_HOST": host}
    if shutil.which("docker") is None:
        _missing("docker CLI is not installed; run scripts/setup-debian.sh")
    probe = subprocess.run(["docker", "version"], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        _missing(f"no Docker engine answers at {host}; run scripts/start-docker.sh")
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    yield host
    if old is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = old


@pytest.fixture(scope="session")
def base_image(docker_host: str) -> str:
    """The Debian 12 base image built by mmdebstrap and `docker import`."""
    subprocess.run([str(REPO / "scripts" / "build-base-image.sh"), BASE_IMAGE], check=True)
    return BASE_IMAGE


def docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against the test engine and return the completed process."""
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def build_image(base_image: str):
    """Build a Dockerfile folder with the real engine once per session and return its tag."""
    built: dict[Path, str] = {}

    def build(context: Path, tag: str) -> str:
        if context not in built:
            result = docker("build", "--network=host", "-q", "-t", tag, str(context), check=False)
            if result.returncode != 0:
                raise AssertionError(f"docker build of {context} failed:\n{result.stderr}")
            built[context] = tag
        return built[context]

    return build


@pytest.fixture(scope="session")
def runtime_tools() -> None:
    """runc and strace, run as root: what minimize traces with."""
    for tool in ("runc", "strace"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is not installed; run scripts/setup-debian.sh")
    if os.geteuid() != 0:
        _missing("tracing a container with runc needs root")
