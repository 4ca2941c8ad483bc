"""--work-dir that cannot be used: read-only, or too small for what the run writes.

The small and read-only folders are tmpfs mounts made in a mount namespace of the test's own
(unshare), so nothing stays mounted on the host when the test ends or fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.runtime]

# A job that writes until its filesystem is full and then reports success, so the probe
# result of the original run alone shows no sign of the failed write.
FILLING_JOB = """\
FROM {base}
ENTRYPOINT ["/bin/sh", "-c", "dd if=/dev/zero of=/var/tmp/fill bs=1M 2>/dev/null; echo done"]
"""
# Room for the exported image and the unpacked snapshot of the Debian base image (about
# 170 MB each), and some more, which the job fills.
SMALL_TMPFS = "450m"


def edgetrim_in_tmpfs(folder: Path, options: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run edgetrim with a tmpfs mounted at ``folder`` with ``options``, in a private namespace."""
    script = 'mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(
        [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            options, str(folder), sys.executable, "-m", "edgetrim", *args,
        ],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture
def filling_job(build_image, base_image, tmp_path) -> str:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(FILLING_JOB.format(base=base_image))
    return build_image(context, "edgetrim-test/filling-job:latest")


def test_full_work_dir_fails_run(filling_job, runtime_tools, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = edgetrim_in_tmpfs(
        work, f"size={SMALL_TMPFS}",
        "minimize", f"docker-daemon:{filling_job}", f"oci:{tmp_path / 'out'}:min",
        "--work-dir", str(work),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "filled up during the run" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("ro,size=1m", "cannot create a temporary folder in {work}"),
        ("size=20m", "no space left for the temporary data in {work}"),
    ],
    ids=["read-only", "too-small-for-export"],
)
def test_unusable_work_dir_rejected(filling_job, runtime_tools, tmp_path, options, message):
    work = tmp_path / "work"
    work.mkdir()
    result = edgetrim_in_tmpfs(
        work, options,
        "minimize", f"docker-daemon:{filling_job}", f"oci:{tmp_path / 'out'}:min",
        "--work-dir", str(work),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message.format(work=work) in result.stderr
    assert "internal error" not in result.stderr
