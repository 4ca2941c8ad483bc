"""Options of `edgetrim minimize` that click alone would parse wrongly."""

from __future__ import annotations

import subprocess
import sys

import pytest


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("value", ["--version", "-v --verbose", "-"])
def test_cmd_probe_value_with_dash(tmp_path, value):
    """The value after "=" is the probe's, so parsing gets as far as opening SOURCE."""
    missing = tmp_path / "missing.tar"
    result = edgetrim(
        "minimize", f"docker-archive:{missing}", f"docker-archive:{tmp_path / 'out.tar'}",
        f"--cmd-probe={value}", "--cmd-probe",
    )  # fmt: skip
    assert result.returncode == 2
    assert "No such option" not in result.stderr
    assert str(missing) in result.stderr


def test_cmd_probe_dash_value_needs_equals(tmp_path):
    result = edgetrim(
        "minimize", f"docker-archive:{tmp_path / 'missing.tar'}",
        f"docker-archive:{tmp_path / 'out.tar'}", "--cmd-probe", "--version",
    )  # fmt: skip
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "--version" in result.stderr
