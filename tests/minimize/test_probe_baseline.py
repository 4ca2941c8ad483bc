"""The original image's runs as the baseline: runnable platform, failed probes, kept programs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.transports.oci_layout import host_platform
from tests.conftest import REPO, docker

pytestmark = [pytest.mark.docker, pytest.mark.runtime]

ARM64_ARCHIVE = Path("go-containerregistry/hello-world-v25.tar")

# The cmd names /usr/bin/sh, a symlink to dash. The file that cannot be executed has exec
# bits, so runc's lookup passes and only the execve fails.
JOB = """\
FROM {base}
RUN printf '\\000not a program' > /usr/local/bin/garbage && chmod +x /usr/local/bin/garbage
CMD ["sh", "-c", "echo default"]
"""


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def job_image(build_image, base_image, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("symlinked-cmd")
    (context / "Dockerfile").write_text(JOB.format(base=base_image))
    return build_image(context, "edgetrim-test/symlinked-cmd:latest")


def no_binfmt_handler_for_arm64() -> bool:
    folder = Path("/proc/sys/fs/binfmt_misc")
    return not any(entry.name not in ("register", "status") for entry in folder.glob("*"))


@pytest.mark.skipif(
    host_platform().architecture != "amd64" or not no_binfmt_handler_for_arm64(),
    reason="needs an amd64 host without binfmt_misc handlers",
)
def test_foreign_platform_rejected(fixtures_dir, runtime_tools, tmp_path):
    out = tmp_path / "out.tar"
    result = edgetrim(
        "minimize", f"docker-archive:{fixtures_dir / ARM64_ARCHIVE}", f"docker-archive:{out}"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "the image is for linux/arm64" in lines[0]
    assert "this machine is linux/amd64" in lines[0]
    assert "binfmt_misc" in lines[0]
    assert not out.exists()


def test_cmd_probe_keeps_cmd_symlink(job_image, runtime_tools, tmp_path):
    keep_list = tmp_path / "keep"
    minimized = "edgetrim-test/symlinked-cmd:min"
    result = edgetrim(
        "minimize", f"docker-daemon:{job_image}", f"docker-daemon:{minimized}",
        "--cmd-probe=/bin/echo hi", "--write-keep-list", str(keep_list),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "probe command /bin/echo hi: exit code 0, 3 bytes" in result.stdout
    lines = keep_list.read_text().splitlines()
    assert "/usr/bin/sh  # entrypoint" in lines
    assert any(line.startswith("/usr/bin/dash  #") for line in lines)
    # The image's own cmd still starts in the minimized image.
    assert docker("run", "--rm", "--network=none", minimized).stdout == "default\n"


def test_failed_command_warns(job_image, runtime_tools, tmp_path):
    result = edgetrim(
        "minimize", f"docker-daemon:{job_image}", f"oci:{tmp_path / 'out'}:min",
        "--cmd-probe=sh -c 'echo oops >&2; exit 3'",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warning) == 1, result.stderr
    assert "exited with code 3 on the original image" in warning[0]
    assert "last line of stderr: oops" in warning[0]


def test_unstartable_program_rejected(job_image, runtime_tools, tmp_path):
    out = tmp_path / "out"
    result = edgetrim(
        "minimize", f"docker-daemon:{job_image}", f"oci:{out}:min",
        "--cmd-probe=/usr/local/bin/garbage",
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "could not start the image's process '/usr/local/bin/garbage'" in result.stderr
    assert "exec format error" in result.stderr
    assert not out.exists()


def test_cmd_probe_without_image_cmd(base_image, runtime_tools, tmp_path):
    """The base image has no ENTRYPOINT or CMD, so --cmd-probe ARGS give the command."""
    result = edgetrim(
        "minimize", f"docker-daemon:{base_image}", f"oci:{tmp_path / 'out'}:min",
        "--cmd-probe=/bin/echo hi",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "probe command /bin/echo hi: exit code 0, 3 bytes" in result.stdout


def test_no_cmd_error_names_option(base_image, runtime_tools, tmp_path):
    out = tmp_path / "out"
    result = edgetrim("minimize", f"docker-daemon:{base_image}", f"oci:{out}:min")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "neither an entrypoint nor a cmd" in result.stderr
    assert "--cmd-probe='ARGS'" in result.stderr
    assert not out.exists()
