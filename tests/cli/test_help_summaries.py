"""``edgetrim --help`` lists every command with a whole one-line summary at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

COMMANDS = ("analyze", "copy", "minimize")


def test_summaries_fit_80_columns() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgetrim", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    listing = result.stdout.partition("Commands:\n")[2].splitlines()
    assert [line.split()[0] for line in listing] == list(COMMANDS), result.stdout
    for line in listing:
        assert "..." not in line
        assert len(line) <= 80, line
        assert line.endswith("."), line
