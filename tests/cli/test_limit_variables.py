"""The EDGETRIM_MAX_* variables read KB as 1000 bytes, as analyze rules do, and K or KiB as 1024."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.errors import InvalidOptionError
from edgetrim.fs.limits import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_LAYER_BYTES,
    LayerLimits,
    parse_size,
)

UNIT_CONVENTION = (
    "KB, MB, GB and TB are powers of 1000, while K, M, G, T, KiB, MiB, GiB and TiB are powers "
    "of 1024"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("100B", 100),
        ("100KB", 100_000),
        ("100kB", 100_000),
        ("100 kb", 100_000),
        ("5MB", 5_000_000),
        ("2GB", 2_000_000_000),
        ("1TB", 10**12),
        ("100KiB", 102_400),
        ("100K", 102_400),
        ("100k", 102_400),
        ("5MiB", 5 << 20),
        ("5M", 5 << 20),
        ("32G", 32 << 30),
        ("32GiB", 32 << 30),
        ("1T", 1 << 40),
        ("1TiB", 1 << 40),
    ],
)
def test_parse_size_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "100iB", "100KX", "1.5G", "-1K", "K", ""])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size") as caught:
        parse_size(text)
    assert UNIT_CONVENTION in str(caught.value)


def test_decimal_and_binary_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "100KB")
    monkeypatch.setenv("EDGETRIM_MAX_ARCHIVE_SIZE", "100K")
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_ENTRIES", "2KB")
    limits = LayerLimits.from_environment()
    assert limits.max_bytes == 100_000
    assert limits.max_archive_bytes == 102_400
    assert limits.max_entries == 2000


def test_defaults_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("EDGETRIM_MAX_LAYER_SIZE", "EDGETRIM_MAX_ARCHIVE_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    limits = LayerLimits.from_environment()
    assert limits.max_bytes == DEFAULT_MAX_LAYER_BYTES == 32 << 30
    assert limits.max_archive_bytes == DEFAULT_MAX_ARCHIVE_BYTES == 64 << 30
    # Written with G, as README lists them, or with GiB, the defaults keep their value.
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "32G")
    monkeypatch.setenv("EDGETRIM_MAX_ARCHIVE_SIZE", "64GiB")
    limits = LayerLimits.from_environment()
    assert limits.max_bytes == DEFAULT_MAX_LAYER_BYTES
    assert limits.max_archive_bytes == DEFAULT_MAX_ARCHIVE_BYTES


def test_invalid_variable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRIM_MAX_LAYER_SIZE", "0KB")
    with pytest.raises(InvalidOptionError, match="EDGETRIM_MAX_LAYER_SIZE: must be above 0"):
        LayerLimits.from_environment()


def test_invalid_variable_through_cli(fixtures_dir: Path) -> None:
    archive = fixtures_dir / "go-containerregistry/test_image_1.tar"
    result = subprocess.run(
        [sys.executable, "-m", "edgetrim", "analyze", f"docker-archive:{archive}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EDGETRIM_MAX_LAYER_SIZE": "100XB"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "edgetrim: environment variable EDGETRIM_MAX_LAYER_SIZE: '100XB' is not a size"
    )
    assert UNIT_CONVENTION in lines[0]
