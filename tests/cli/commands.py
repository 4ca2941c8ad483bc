"""Run the edgetrim command line as a user does, for the option tests of each command."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def edgetrim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``edgetrim ARGS`` in a child process and return its exit code and output."""
    # The registry variables of the caller's shell would change what the tests check.
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in ("EDGETRIM_INSECURE", "EDGETRIM_CA_CERT")
    }
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**clean, **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Check that a command failed with exit code 2 and one error line; return that line."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgetrim: ")
    return lines[0]
