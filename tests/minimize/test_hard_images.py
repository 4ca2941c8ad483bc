"""minimize on images that broke it: symlinked account files, a very deep tree, loud probes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.trace.probes import MAX_OUTPUT_BYTES
from tests.conftest import REPO, docker

pytestmark = [pytest.mark.docker, pytest.mark.runtime]


def edgetrim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip


def build(build_image, base_image: str, tmp_path: Path, name: str, dockerfile: str) -> str:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile.format(base=base_image))
    return build_image(context, f"edgetrim-test/{name}:latest")


# Some distributions keep the account files elsewhere and link them into /etc.
SYMLINKED_ACCOUNTS = """\
FROM {base}
RUN useradd --system --uid 992 --user-group probe \\
    && mkdir -p /usr/share/accounts \\
    && mv /etc/passwd /etc/group /usr/share/accounts/ \\
    && ln -s ../usr/share/accounts/passwd /etc/passwd \\
    && ln -s /usr/share/accounts/group /etc/group
USER probe:probe
ENTRYPOINT ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g)"]
"""


def test_symlinked_passwd_and_group(build_image, base_image, runtime_tools, tmp_path):
    original = build(build_image, base_image, tmp_path, "symlinked-accounts", SYMLINKED_ACCOUNTS)
    minimized = "edgetrim-test/symlinked-accounts:min"
    result = edgetrim("minimize", f"docker-daemon:{original}", f"docker-daemon:{minimized}")
    assert result.returncode == 0, result.stderr
    assert "probe command: exit code 0" in result.stdout
    output = docker("run", "--rm", "--network=none", minimized).stdout
    assert output == "uid=992 gid=992\n"


# A layer with a chain of 2,000 directories, deeper than Python's recursion limit.
DEEP_TREE = """\
FROM {base}
RUN deep=d; i=1; while [ $i -lt 2000 ]; do deep="$deep/d"; i=$((i+1)); done; \\
    mkdir -p "/opt/deep/$deep" && echo bottom > "/opt/deep/$deep/file"
ENTRYPOINT ["/bin/sh", "-c", "echo job"]
"""


def test_deep_tree_cleaned_up(build_image, base_image, runtime_tools, tmp_path):
    original = build(build_image, base_image, tmp_path, "deep-tree", DEEP_TREE)
    work = tmp_path / "work"
    work.mkdir()
    try:
        result = edgetrim(
            "minimize", f"docker-daemon:{original}", f"oci:{tmp_path / 'out'}:min",
            "--work-dir", str(work),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert list(work.iterdir()) == []
    finally:
        # pytest removes old temporary folders with shutil.rmtree, which fails on this depth.
        subprocess.run(["rm", "-rf", str(work)], check=True)


LOUD_SERVICE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends busybox perl \\
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["busybox", "httpd", "-f", "-p", "127.0.0.1:8094", "-h", "/usr/share"]
"""
LOUD_BYTES = 500_000_000


def test_probe_output_bounded(build_image, base_image, runtime_tools, tmp_path):
    """Exec and host probes that print 500 MB each: their output is capped, and so is memory."""
    original = build(build_image, base_image, tmp_path, "loud-service", LOUD_SERVICE)
    audit = tmp_path / "audit.log"
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.minimize.audited_cli", str(audit),
            "minimize", f"docker-daemon:{original}", f"oci:{tmp_path / 'out'}:min",
            "--tcp-probe", "8094",
            "--exec-probe", f"busybox head -c {LOUD_BYTES} /dev/zero",
            "--probe-cmd", f"head -c {LOUD_BYTES} /dev/zero",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sizes = [int(size) for size in re.findall(r"exit code 0, (\d+) bytes", result.stdout)]
    assert len(sizes) == 2, result.stdout
    for size in sizes:
        assert MAX_OUTPUT_BYTES < size < MAX_OUTPUT_BYTES + 200
    maxrss_kib = int(audit.read_text().splitlines()[-1].split()[1])
    assert maxrss_kib * 1024 < LOUD_BYTES, f"peak memory {maxrss_kib} KiB"
    assert os.path.getsize(audit) > 0
