"""minimize on real images built by the real Docker engine, checked by running the results in it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, docker

pytestmark = [pytest.mark.docker, pytest.mark.runtime]


def edgetrim(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=timeout
    )


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)


def http_answer(tag: str, port: int, path: str = "/") -> tuple[int, bytes]:
    """Start the image with the real engine, GET the path, and remove the container."""
    name = f"edgetrim-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network=host", tag)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}{path}", timeout=5
                ) as response:
                    return response.status, response.read()
            except OSError:
                if time.monotonic() > deadline:
                    logs = docker("logs", name, check=False)
                    raise AssertionError(f"{tag} never answered on {port}: {logs.stderr}") from None
                time.sleep(0.3)
    finally:
        docker("rm", "-f", name, check=False)


def load(archive: Path) -> str:
    output = docker("load", "-i", str(archive)).stdout
    return output.strip().splitlines()[-1].split(": ", 1)[1]


@pytest.fixture(scope="module")
def python_http(build_image) -> str:
    return build_image(REPO / "examples" / "python-http", "edgetrim-test/python-http:latest")


@pytest.fixture(scope="module")
def batch_job(build_image) -> str:
    return build_image(REPO / "examples" / "batch-job", "edgetrim-test/batch-job:latest")


def test_http_service_minimized(python_http, runtime_tools, tmp_path):
    dest = tmp_path / "min.tar"
    result = edgetrim(
        "minimize",
        f"docker-daemon:{python_http}",
        f"docker-archive:{dest}:edgetrim-test/python-http:min",
        "--http-probe",
        "8080/",
    )
    assert result.returncode == 0, result.stderr
    assert "same answer from the minimized image" in result.stdout
    tag = load(dest)
    assert tag == "edgetrim-test/python-http:min"
    assert image_size(tag) < image_size(python_http) / 3
    assert http_answer(tag, 8080) == http_answer(python_http, 8080)
    for field in (
        "Entrypoint",
        "Cmd",
        "Env",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Labels",
        "StopSignal",
    ):
        template = f"{{{{json .Config.{field}}}}}"
        original_value = docker("image", "inspect", "-f", template, python_http).stdout
        assert docker("image", "inspect", "-f", template, tag).stdout == original_value, field


def test_batch_job_minimized(batch_job, runtime_tools, tmp_path):
    dest = tmp_path / "job.tar"
    result = edgetrim(
        "minimize",
        f"docker-daemon:{batch_job}",
        f"docker-archive:{dest}:edgetrim-test/batch-job:min",
        "--cmd-probe",
    )
    assert result.returncode == 0, result.stderr
    tag = load(dest)
    original = docker("run", "--rm", "--network=none", batch_job)
    minimized = docker("run", "--rm", "--network=none", tag)
    assert minimized.stdout == original.stdout
    assert original.stdout.strip()
    assert image_size(tag) < image_size(batch_job) / 5
    assert (
        docker("run", "--rm", "--network=none", "--entrypoint", "gcc", tag, check=False).returncode
        != 0
    )


UNSEEN_SERVICE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends busybox perl \\
    && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /srv/www && echo '<h1>field kit status: ok</h1>' > /srv/www/index.html \\
    && useradd --system --uid 990 web
USER web
ENTRYPOINT ["busybox", "httpd", "-f", "-p", "127.0.0.1:8093", "-h", "/srv/www"]
"""


def test_unseen_service_as_non_root(build_image, base_image, runtime_tools, tmp_path):
    """A service the examples do not cover: busybox httpd, run as a system user."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(UNSEEN_SERVICE.format(base=base_image))
    original = build_image(context, "edgetrim-test/busybox-httpd:latest")
    result = edgetrim(
        "minimize",
        f"docker-daemon:{original}",
        "docker-daemon:edgetrim-test/busybox-httpd:min",
        "--http-probe",
        "8093/index.html",
    )
    assert result.returncode == 0, result.stderr
    assert http_answer("edgetrim-test/busybox-httpd:min", 8093, "/index.html") == (
        200,
        b"<h1>field kit status: ok</h1>\n",
    )
    user = docker(
        "image", "inspect", "-f", "{{.Config.User}}", "edgetrim-test/busybox-httpd:min"
    ).stdout.strip()
    assert user == "web"
    wrong_status = edgetrim(
        "minimize", f"docker-daemon:{original}", f"docker-archive:{tmp_path / 'no.tar'}",
        "--http-probe", "8093/index.html,status=404",
    )  # fmt: skip
    assert wrong_status.returncode == 2
    assert "returned status 200, but the probe expects 404" in wrong_status.stderr
    assert not (tmp_path / "no.tar").exists()
    listing = docker(
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "busybox",
        "edgetrim-test/busybox-httpd:min",
        "ls",
        "/usr/bin",
    ).stdout
    assert "perl" not in listing.split()


LISTING_JOB = """\
FROM {base}
ENTRYPOINT ["/bin/sh", "-c", "ls /usr/share/doc | wc -l"]
"""


def test_listed_directory_keeps_entries(build_image, base_image, runtime_tools, tmp_path):
    """A job that counts directory entries it never opens: the listing itself is the output."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(LISTING_JOB.format(base=base_image))
    original = build_image(context, "edgetrim-test/listing-job:latest")
    dest = tmp_path / "listing.tar"
    result = edgetrim(
        "minimize",
        f"docker-daemon:{original}",
        f"docker-archive:{dest}:edgetrim-test/listing-job:min",
    )
    assert result.returncode == 0, result.stderr
    load(dest)
    expected = docker("run", "--rm", "--network=none", original).stdout
    assert int(expected) > 10
    assert (
        docker("run", "--rm", "--network=none", "edgetrim-test/listing-job:min").stdout == expected
    )


CLOCK_JOB = """\
FROM {base}
ENTRYPOINT ["/bin/sh", "-c", "date +%s%N"]
"""


def test_verification_catches_changed_output(build_image, base_image, runtime_tools, tmp_path):
    """A job whose output differs on every run: verification must fail and show the diff."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(CLOCK_JOB.format(base=base_image))
    original = build_image(context, "edgetrim-test/clock-job:latest")
    dest = tmp_path / "clock.tar"
    result = edgetrim("minimize", f"docker-daemon:{original}", f"docker-archive:{dest}")
    assert result.returncode == 1
    assert "responded to the probes differently" in result.stderr
    assert "stdout differs" in result.stderr
    assert not dest.exists()
    unverified = edgetrim(
        "minimize", f"docker-daemon:{original}", f"docker-archive:{dest}", "--no-verify"
    )
    assert unverified.returncode == 0, unverified.stderr
    assert dest.exists()


LOCALHOST_JOB = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends python3 \\
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["python3", "-c", "import socket; print(socket.gethostbyname('localhost'))"]
"""


def test_localhost_resolves_without_etc_hosts(build_image, base_image, runtime_tools, tmp_path):
    """Docker mounts /etc/hosts into containers, so images lack it; the traced run needs one."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(LOCALHOST_JOB.format(base=base_image))
    original = build_image(context, "edgetrim-test/localhost-job:latest")
    result = edgetrim("minimize", f"docker-daemon:{original}", f"oci:{tmp_path / 'oci'}:min")
    assert result.returncode == 0, result.stderr
    assert "probe command: exit code 0" in result.stdout


def test_same_keep_gives_same_digest(batch_job, runtime_tools, tmp_path):
    first = edgetrim(
        "minimize", f"docker-daemon:{batch_job}", f"oci:{tmp_path / 'a'}:min", "--cmd-probe"
    )
    second = edgetrim(
        "minimize", f"docker-daemon:{batch_job}", f"oci:{tmp_path / 'b'}:min", "--cmd-probe"
    )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    # oci: identifies the image by the digest of the manifest written.
    first_digest = re.search(r"\(manifest digest (sha256:[0-9a-f]{64})\)", first.stdout)
    second_digest = re.search(r"\(manifest digest (sha256:[0-9a-f]{64})\)", second.stdout)
    assert first_digest is not None, first.stdout
    assert second_digest is not None, second.stdout
    assert first_digest.group(1) == second_digest.group(1)
