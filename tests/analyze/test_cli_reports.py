"""`edgetrim analyze` as a user runs it: tables, JSON and its schema, the HTML page, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import jsonschema
import pytest

from edgetrim.analyze.report_html import COLORS
from edgetrim.analyze.report_json import load_schema
from tests.conftest import IN_CI
from tests.fs.layers import build_tar, directory, reg, symlink
from tests.hostile.archives import docker_archive, tar_layer


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def dive_ref(fixtures_dir) -> str:
    return f"docker-archive:{fixtures_dir / 'dive' / 'test-docker-image.tar'}"


@pytest.fixture(scope="module")
def whiteout_ref(fixtures_dir) -> str:
    return f"docker-archive:{fixtures_dir / 'go-containerregistry' / 'whiteout_image.tar'}"


def test_tables(dive_ref):
    result = edgetrim("analyze", dive_ref)
    assert result.returncode == 0, result.stderr
    for heading in (
        "Size and waste",
        "Layers",
        "Hidden copies",
        "Duplicate content",
        "Attack surface",
    ):
        assert heading in result.stdout
    assert "0.9528" in result.stdout
    assert "/bin/sh -c chmod +x /root/saved.txt" in result.stdout
    # docker save writes plain tars, which the report must not call compressed.
    assert "layer blobs as stored (uncompressed)" in result.stdout
    assert "compressed layers" not in result.stdout


def test_json_follows_schema(dive_ref, whiteout_ref):
    result = edgetrim("analyze", "--json", "--fail-if", "efficiency < 0.1", dive_ref, whiteout_ref)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, load_schema())
    assert document["schema"] == "edgetrim-analyze/v1"
    first = document["images"][0]
    assert first["waste"]["wasted_bytes"] == 57645
    assert first["sizes"]["stored_bytes"] == 1220598
    assert len(first["layers"]) == 14
    assert first["attack_surface"]["runs_as_root"] is True
    assert document["policy"]["failed"] == 0
    assert len(document["policy"]["outcomes"]) == 2
    assert document["device_set"]["unique_layers"] == 17  # 14 + 3 layers, no chain ID shared
    for layer in first["layers"]:
        assert layer["compressed"] is False
        assert layer["blob_bytes"] == layer["uncompressed_bytes"]
        assert layer["compressed_bytes"] == layer["blob_bytes"]
    assert first["sizes"]["blob_bytes"] == sum(layer["blob_bytes"] for layer in first["layers"])
    assert first["sizes"]["compressed_bytes"] == first["sizes"]["blob_bytes"]


def test_analyze_imports_no_registry_or_engine_client(whiteout_ref):
    # Importing httpx and the Docker SDK takes a large part of a short analysis, and reading a
    # docker archive needs neither.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgetrim", "analyze", "--json", whiteout_ref],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    for module in ("docker", "httpx", "requests", "rich", "edgetrim.minimize.pipeline"):
        assert module not in imported
    assert "edgetrim.analyze.analysis" in imported


def test_json_of_one_image_has_no_device_set(whiteout_ref):
    document = json.loads(edgetrim("analyze", "--json", whiteout_ref).stdout)
    jsonschema.validate(document, load_schema())
    assert document["device_set"] is None
    assert document["policy"] is None


def test_failed_rules_exit_1_and_name_each_rule(dive_ref, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('fail-if = ["duplicate_bytes > 2%"]\n')
    result = edgetrim(
        "analyze",
        dive_ref,
        "--fail-if",
        "wasted_bytes > 50kB",
        "--fail-if",
        "efficiency < 0.5",
        "--rules",
        str(rules),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "2 rule(s) failed" in lines[0]
    assert "'wasted_bytes > 50kB'" in lines[0]
    assert "'duplicate_bytes > 2%'" in lines[0]
    assert "'efficiency < 0.5'" not in lines[0]
    assert "FAIL wasted_bytes > 50kB" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fail-if", "wasted_bytes >> 1"], "invalid rule 'wasted_bytes >> 1'"),
        (["--rules", "/nonexistent/rules.toml"], "rules file not found"),
    ],
)
def test_bad_rules_exit_2(dive_ref, args, needle):
    result = edgetrim("analyze", dive_ref, *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert needle in result.stderr


def test_opaque_marker_in_symlink_exit_2(tmp_path):
    # minimize rejects this layer as unsafe, so analyze must not report on it either.
    lower = build_tar(directory("usr/lib"), reg("usr/lib/x", b"x"), symlink("lib", "usr/lib"))
    upper = build_tar(reg("lib/.wh..wh..opq", b""))
    archive = docker_archive(tmp_path / "image.tar", [tar_layer(lower), tar_layer(upper)])
    result = edgetrim("analyze", "--json", f"docker-archive:{archive}")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "opaque marker /lib/.wh..wh..opq lies under the symlink /lib -> usr/lib" in (
        result.stderr
    )
    assert len(result.stderr.splitlines()) == 1


def test_missing_image_exit_2(tmp_path):
    result = edgetrim("analyze", f"docker-archive:{tmp_path / 'absent.tar'}")
    assert result.returncode == 2
    assert "absent.tar" in result.stderr
    assert "Traceback" not in result.stderr


def test_html_page_is_self_contained(dive_ref, whiteout_ref, tmp_path):
    page = tmp_path / "report.html"
    result = edgetrim("analyze", dive_ref, whiteout_ref, "--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert "<svg" in text
    assert "Device set: 2 images" in text
    for fetch in ("<script", "src=", "href=", "url(", "@import", "<link"):
        assert fetch not in text
    # The only URL is the SVG namespace name, which no browser fetches.
    assert text.count("http") == text.count('xmlns="http://www.w3.org/2000/svg"')


def test_html_unwritable_path_exit_2(dive_ref, tmp_path):
    result = edgetrim("analyze", dive_ref, "--html", str(tmp_path / "missing" / "r.html"))
    assert result.returncode == 2
    assert "missing does not exist" in result.stderr


def test_html_to_device_rejected(dive_ref):
    result = edgetrim("analyze", dive_ref, "--html", "/dev/null")
    assert result.returncode == 2
    assert "is not a regular file" in result.stderr


def test_html_renders_in_chromium(dive_ref, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is not installed; apt-get install chromium")
        pytest.skip("chromium is not installed; apt-get install chromium")
    page = tmp_path / "report.html"
    assert edgetrim("analyze", dive_ref, "--html", str(page)).returncode == 0
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1280,1400",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
            env={**os.environ, "HOME": profile},
        )
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (1280, 1400)
    colors = set(pixels)
    assert len(colors) > 20
    # The treemap and layer chart draw in-use, overwritten, deleted and duplicate bytes.
    for category in ("IN_USE", "OVERWRITTEN", "DELETED", "DUPLICATE"):
        hex_color = next(v for k, v in COLORS.items() if k.name == category)
        rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in colors, category


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG into (width, height, RGB pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks, header = 8, [], None
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8
    assert color_type in (2, 6)
    assert interlace == 0
    channels = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + paeth(left, up, corner)) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels


def paeth(left: int, up: int, corner: int) -> int:
    """Return the Paeth predictor of PNG filter type 4."""
    estimate = left + up - corner
    to_left, to_up, to_corner = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
    if to_left <= to_up and to_left <= to_corner:
        return left
    if to_up <= to_corner:
        return up
    return corner


def test_library_does_not_print(dive_ref, capsys):
    from edgetrim.analyze import analyze_image
    from edgetrim.transports import open_image

    with open_image(dive_ref) as image:
        analyze_image(image)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_schema_file_is_in_the_package():
    schema_path = (
        Path(__file__).resolve().parents[2] / "src/edgetrim/analyze/schema/analyze-v1.json"
    )
    assert json.loads(schema_path.read_text()) == load_schema()


def _analysis_with_large_layers(dive_ref: str, *, mixed_compression: bool):
    """The dive image's analysis, with sizes and counts as wide as a large image has."""
    import dataclasses

    from edgetrim.analyze import analyze_image
    from edgetrim.transports import open_image

    with open_image(dive_ref) as image:
        analysis = analyze_image(image, source=dive_ref)
    layers = [
        dataclasses.replace(
            layer,
            index=layer.index + 100,
            blob_bytes=174_300_000,
            compressed=mixed_compression and layer.index % 2 == 0,
            uncompressed_bytes=468_300_000,
            content_bytes=168_300_000,
            files=123_456,
            bytes_by_category={**layer.bytes_by_category, "overwritten": 999_900_000},
        )
        for layer in analysis.layers
    ]
    return dataclasses.replace(analysis, layers=layers)


@pytest.mark.parametrize("mixed_compression", [False, True])
@pytest.mark.parametrize("width", [80, 100, 120])
def test_layers_table_fits_width(dive_ref, width, mixed_compression):
    import io

    from rich.console import Console

    from edgetrim.analyze.report_text import render_image

    analysis = _analysis_with_large_layers(dive_ref, mixed_compression=mixed_compression)
    console = Console(file=io.StringIO(), width=width)
    render_image(console, analysis, top=5)
    output = console.file.getvalue()
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= width
    rows = [line for line in lines if line.startswith("│ 1")]
    assert len(rows) == len(analysis.layers)
    for layer, row in zip(analysis.layers, rows, strict=True):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == str(layer.index)
        for number in ("174.3 MB", "468.3 MB", "123,456", "168.3 MB", "999.9 MB"):
            assert number in cells, row
        numbers = [cell for cell in cells if not cell.startswith("/bin/sh")]
        assert "…" not in "".join(numbers), row
    if width >= 100 or not mixed_compression:
        # The history entry shrinks to fit, but stays.
        assert "created by" in output
        assert "/bin/sh -c" in output


def test_toolchain_title_says_top_n(dive_ref):
    import dataclasses
    import io

    from rich.console import Console

    from edgetrim.analyze.report_text import render_image
    from edgetrim.analyze.result import PackageReport, PackageSummary

    analysis = _analysis_with_large_layers(dive_ref, mixed_compression=False)
    packages = [
        PackageReport(f"gcc-{n}", "1.0", "amd64", 1, 1, 1000 - n, toolchain=True) for n in range(3)
    ]
    analysis = dataclasses.replace(analysis, packages=PackageSummary("dpkg", packages))
    for top, title in ((2, "Toolchain packages (top 2 of 3)"), (3, "Toolchain packages")):
        console = Console(file=io.StringIO(), width=120)
        render_image(console, analysis, top=top)
        output = console.file.getvalue()
        assert title in output
        assert "Toolchain packages (top 3" not in output


def test_json_policy_bytes_are_integers(dive_ref):
    result = edgetrim(
        "analyze", "--json", "--fail-if", "wasted_bytes > 1.5kB", "--fail-if", "wasted_bytes > 2%",
        dive_ref,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, load_schema())
    outcomes = document["policy"]["outcomes"]
    assert [outcome["limit"] for outcome in outcomes] == [1500, 24411]  # 2% of 1,220,598
    assert '"value": 57645,' in result.stdout
    assert '"limit": 1500,' in result.stdout
    assert ".0," not in result.stdout
