"""check_runnable with real binfmt_misc handlers, registered in a private namespace.

Since Linux 6.7 a new user namespace can mount its own binfmt_misc instance, so the handlers
registered here are invisible to the host and vanish with the namespace.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgetrim.errors import ContainerRunError
from edgetrim.image.model import Platform
from edgetrim.trace.platforms import check_runnable, elf_headers
from edgetrim.transports.oci_layout import host_platform
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    host_platform().architecture != "amd64", reason="the cases assume an amd64 host"
)

# The magic and mask that qemu-user-static registers for aarch64 programs.
AARCH64_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
CHECK = """\
import sys
from edgetrim.errors import ContainerRunError
from edgetrim.image.model import Platform
from edgetrim.trace.platforms import check_runnable
try:
    check_runnable(Platform("linux", sys.argv[1]), source="test-image")
except ContainerRunError as exc:
    print(exc)
    sys.exit(1)
"""


def check_with_handler(flags: str, architecture: str) -> subprocess.CompletedProcess[str]:
    """Register an aarch64 handler with ``flags`` and check ``architecture`` in a namespace."""
    rule = f":edgetrim-test-aarch64:M::{AARCH64_MAGIC}:{AARCH64_MASK}:/bin/true:{flags}"
    script = (
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 77\n"
        'printf "$1" > /proc/sys/fs/binfmt_misc/register || exit 77\n'
        'shift; exec "$@"\n'
    )
    result = subprocess.run(
        [
            "unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c", script, "sh",
            rule, sys.executable, "-c", CHECK, architecture,
        ],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if result.returncode == 77:
        pytest.skip(f"cannot mount binfmt_misc in a user namespace: {result.stderr.strip()}")
    return result


def test_handler_with_fix_binary_accepted():
    result = check_with_handler("F", "arm64")
    assert result.returncode == 0, result.stdout + result.stderr


def test_handler_without_fix_binary_rejected():
    result = check_with_handler("", "arm64")
    assert result.returncode == 1, result.stderr
    assert "'edgetrim-test-aarch64' lacks the F flag" in result.stdout


def test_handler_for_other_architecture_ignored():
    result = check_with_handler("F", "s390x")
    assert result.returncode == 1, result.stderr
    assert "no binfmt_misc handler for s390x programs" in result.stdout


def test_host_architecture_runs():
    check_runnable(Platform("linux", "amd64"), source="test-image")
    check_runnable(Platform("linux", "386"), source="test-image")


def test_other_os_rejected():
    with pytest.raises(ContainerRunError, match="the image is for windows/amd64"):
        check_runnable(Platform("windows", "amd64"), source="test-image")


def test_elf_header_of_arm64():
    executable, position_independent = elf_headers("arm64")
    assert executable[:4] == b"\x7fELF"
    assert executable[18:20] == b"\xb7\x00"
    assert executable[16:18] == b"\x02\x00"
    assert position_independent[16:18] == b"\x03\x00"
