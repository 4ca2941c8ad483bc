"""`edgetrim copy` names the digest it prints: an image ID or a manifest digest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.transports import written_digest_name


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("docker-archive:/tmp/x.tar", "image ID"),
        ("docker-daemon:repo/name:tag", "image ID"),
        ("oci:/tmp/layout:ref", "manifest digest"),
        ("oci-archive:/tmp/x.tar", "manifest digest"),
        ("docker://127.0.0.1:5000/repo:tag", "manifest digest"),
    ],
)
def test_digest_name_by_transport(reference: str, name: str) -> None:
    assert written_digest_name(reference) == name


def test_copy_prints_named_digest(fixtures_dir: Path, tmp_path: Path) -> None:
    source = f"docker-archive:{fixtures_dir / 'dive' / 'test-docker-image.tar'}"
    for dest, name in (
        (f"docker-archive:{tmp_path / 'copy.tar'}", "image ID"),
        (f"oci:{tmp_path / 'layout'}:copy", "manifest digest"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "edgetrim", "copy", source, dest],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert re.search(rf"\({name} sha256:[0-9a-f]{{64}}\)$", result.stdout.strip()), (
            result.stdout
        )
