"""Analysis with hashing worker processes gives what analysis in one process gives.

Layers stored as plain tars in a local file are read in place and hashed by workers
(edgetrim.analyze.stored); every other layer, and every layer with EDGETRIM_HASH_WORKERS=0,
takes the in-process path. Both must give the same report and the same errors.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from edgetrim.analyze import analyze_image, stored
from edgetrim.analyze.report_json import build_document
from edgetrim.errors import DigestMismatchError, ImageFormatError
from edgetrim.fs.hashpool import WORKERS_VARIABLE
from edgetrim.transports import open_image
from tests.analyze.test_fixture_waste import DUPLICATE
from tests.fs.test_hashpool import child_pids
from tests.transports.test_fixtures import IMAGE_CASES, Loads

LOADABLE = [case for case in IMAGE_CASES if isinstance(case.expected, Loads) and not case.platform]


@pytest.fixture(autouse=True)
def workers_for_small_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start workers for the fixtures too, which are smaller than is worth it otherwise."""
    monkeypatch.setattr(stored, "MIN_BYTES", 0)


def report(reference: str, workers: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """Analyze ``reference`` with ``workers`` workers; return the JSON report or the error."""
    monkeypatch.setenv(WORKERS_VARIABLE, str(workers))
    try:
        with open_image(reference) as image:
            analysis = analyze_image(image, source=reference)
    except ImageFormatError as exc:
        return f"{type(exc).__name__}: {exc}"
    return json.dumps(build_document([analysis], None, None, top=10**6), sort_keys=True)


@pytest.mark.parametrize("case", LOADABLE, ids=[case.id for case in LOADABLE])
def test_fixture_reports_agree(case, fixtures_dir: Path, monkeypatch) -> None:
    reference = case.reference(fixtures_dir)
    in_process = report(reference, 0, monkeypatch)
    assert report(reference, 2, monkeypatch) == in_process
    assert report(reference, 1, monkeypatch) == in_process


def test_workers_take_the_layers_in_place(fixtures_dir: Path, monkeypatch) -> None:
    # The dive fixture is a docker save archive: every layer qualifies, and the busybox binary,
    # the only file of 256 KiB or more, goes to a worker.
    started = []
    real_start = stored.StoredLayers.start_layer

    def start_layer(self, index, layer):
        place = real_start(self, index, layer)
        started.append(place is not None)
        return place

    monkeypatch.setattr(stored.StoredLayers, "start_layer", start_layer)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    before = child_pids()
    with open_image(f"docker-archive:{fixtures_dir / 'dive' / 'test-docker-image.tar'}") as image:
        analysis = analyze_image(image)
        assert started == [True] * 14
        assert analysis.waste.duplicate_bytes == DUPLICATE
        # At the usual threshold, this 1.3 MB image is read in one process.
        monkeypatch.setattr(stored, "MIN_BYTES", 32 << 20)
        started.clear()
        analyze_image(image)
        assert started == [False] * 14
    assert child_pids() == before


def corrupt_copy(source: Path, tmp_path: Path) -> Path:
    """Copy a docker archive and flip one byte inside a file's content in its first layer."""
    target = tmp_path / source.name
    shutil.copyfile(source, target)
    with tarfile.open(target) as outer:
        layer = next(info for info in outer if info.name.endswith("layer.tar"))
        with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
            member = next(info for info in inner if info.isreg() and info.size > 1000)
            position = layer.offset_data + member.offset_data + 500
    with open(target, "r+b") as archive:
        archive.seek(position)
        byte = archive.read(1)
        archive.seek(position)
        archive.write(bytes([byte[0] ^ 0xFF]))
    return target


def test_corrupt_layer_same_error(fixtures_dir: Path, tmp_path: Path, monkeypatch) -> None:
    archive = corrupt_copy(fixtures_dir / "dive" / "test-docker-image.tar", tmp_path)
    reference = f"docker-archive:{archive}"
    in_process = report(reference, 0, monkeypatch)
    assert in_process.startswith(DigestMismatchError.__name__)
    assert "the image is corrupt, fetch or export it again" in in_process
    assert report(reference, 2, monkeypatch) == in_process


def test_archive_written_during_the_scan(fixtures_dir: Path, tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "image.tar"
    shutil.copyfile(fixtures_dir / "dive" / "test-docker-image.tar", archive)
    real_verify = stored.StoredLayers.verify

    def write_then_verify(self):
        # Another program writes to the archive while the analysis runs. It writes the same
        # byte back, so only the file's change time shows the write.
        with open(archive, "r+b") as writer:
            writer.write(archive.read_bytes()[:1])
        real_verify(self)

    monkeypatch.setattr(stored.StoredLayers, "verify", write_then_verify)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    changed = "the file changed while edgetrim read it"
    with (
        open_image(f"docker-archive:{archive}") as image,
        pytest.raises(ImageFormatError, match=changed),
    ):
        analyze_image(image)


def test_failure_mid_scan_stops_workers(fixtures_dir: Path, monkeypatch) -> None:
    def fail(self, *args):
        raise ImageFormatError("stop here")

    monkeypatch.setattr(stored.StoredLayers, "file_results", fail)
    monkeypatch.setenv(WORKERS_VARIABLE, "2")
    before = child_pids()
    with open_image(f"docker-archive:{fixtures_dir / 'dive' / 'test-docker-image.tar'}") as image:
        open_files = set(os.listdir(f"/proc/{os.getpid()}/fd"))
        with pytest.raises(ImageFormatError, match="stop here"):
            analyze_image(image)
        # The archive's descriptor that the workers shared is closed again.
        assert set(os.listdir(f"/proc/{os.getpid()}/fd")) <= open_files
    assert child_pids() == before


def test_workers_that_cannot_start(fixtures_dir: Path, monkeypatch, caplog) -> None:
    # Without an interpreter to start, the image is read in this process, with a warning.
    reference = f"docker-archive:{fixtures_dir / 'dive' / 'test-docker-image.tar'}"
    in_process = report(reference, 0, monkeypatch)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    assert report(reference, 2, monkeypatch) == in_process
    assert "cannot start a hashing worker with /nonexistent/python3" in caplog.text
    assert "reading the image in this process" in caplog.text
