"""The edgetrim CLI against real registries: push an image, analyze and minimize it from the
registry, push the result back, and check that skopeo and Docker accept it.

It runs once against a plain-HTTP registry (EDGETRIM_INSECURE=1) and once against an HTTPS
registry with htpasswd auth, whose CA comes from EDGETRIM_CA_CERT and whose credentials come
from a config.json in DOCKER_CONFIG, as docker login writes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import docker
from tests.transports.registry_server import (
    PASSWORD,
    USER,
    CertificateAuthority,
    Registry,
    write_docker_config,
)

pytestmark = pytest.mark.docker

JOB = """\
FROM {base}
CMD ["/bin/sh", "-c", "echo edge job ran; ls /etc/debian_version"]
"""


@dataclass
class Setup:
    """A registry, the environment that reaches it, and skopeo's flags for it."""

    registry: Registry
    env: dict[str, str]
    skopeo_flags: list[str]
    skopeo_copy_flags: list[str]


@pytest.fixture(scope="module")
def job_image(build_image, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("job")
    (context / "Dockerfile").write_text(JOB.format(base=base_image))
    return build_image(context, "edgetrim-test/registry-job:latest")


@pytest.fixture(scope="module", params=["plain-http", "tls-htpasswd"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "plain-http":
        with Registry(folder / "registry") as registry:
            yield Setup(
                registry,
                {"EDGETRIM_INSECURE": "1", "DOCKER_CONFIG": str(folder / "no-config")},
                ["--tls-verify=false"],
                ["--src-tls-verify=false"],
            )
        return
    ca = CertificateAuthority(folder / "ca")
    cert_dir = folder / "certs"
    cert_dir.mkdir()
    shutil.copy(ca.ca_cert, cert_dir / "ca.crt")
    with Registry(folder / "registry", tls=ca, htpasswd=True) as registry:
        config = write_docker_config(folder / "docker-config", registry.host, USER, PASSWORD)
        credentials = f"{USER}:{PASSWORD}"
        yield Setup(
            registry,
            {"EDGETRIM_CA_CERT": str(ca.ca_cert), "DOCKER_CONFIG": str(config)},
            ["--cert-dir", str(cert_dir), "--creds", credentials],
            ["--src-cert-dir", str(cert_dir), "--src-creds", credentials],
        )


def edgetrim(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGETRIM_")}
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, **setup.env},
    )


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is missing; install the Debian package skopeo")
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)


def test_minimize_through_registry(
    setup: Setup, job_image: str, runtime_tools: None, tmp_path: Path
) -> None:
    registry = setup.registry.host
    original = f"docker://{registry}/app:1"
    minimized = f"docker://{registry}/app:min"

    pushed = edgetrim(setup, "copy", f"docker-daemon:{job_image}", original)
    assert pushed.returncode == 0, pushed.stderr

    analyzed = edgetrim(setup, "analyze", "--json", original)
    assert analyzed.returncode == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)

    result = edgetrim(setup, "minimize", original, minimized, "--cmd-probe")
    assert result.returncode == 0, result.stderr
    assert "same answer from the minimized image" in result.stdout

    inspect = skopeo("inspect", *setup.skopeo_flags, minimized)
    assert inspect.returncode == 0, inspect.stderr
    report = json.loads(inspect.stdout)
    assert len(report["Layers"]) == 1
    copied = skopeo("copy", *setup.skopeo_copy_flags, minimized, f"oci:{tmp_path / 'oci'}:min")
    assert copied.returncode == 0, copied.stderr

    if "EDGETRIM_INSECURE" not in setup.env:
        return  # The plain-HTTP run checks the minimized image in the engine.
    # The minimized image from the registry still does the job, in the real engine.
    tag = "edgetrim-test/registry-job:min"
    loaded = edgetrim(setup, "copy", minimized, f"docker-daemon:{tag}")
    assert loaded.returncode == 0, loaded.stderr
    try:
        before = docker("run", "--rm", "--network=none", job_image)
        after = docker("run", "--rm", "--network=none", tag)
        assert after.stdout == before.stdout
        assert "edge job ran" in after.stdout
    finally:
        docker("rmi", "--force", tag, check=False)
