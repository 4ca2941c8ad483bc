"""Every image of bench/fleet still passes its checks after `edgetrim minimize`.

Each image is built from its Dockerfile with the real engine, its original is checked against the
`expect` entries of bench/fleet/fleet.toml, and `edgetrim minimize` runs with the image's probes
and verifies its result. The minimized image is then loaded into the engine and run with the same
checks, so the verdict comes from Docker and not only from minimize's own runc run. Last, a
scanner-style read of the minimized dpkg database must match the files that are present.

These tests take most of the suite's time: 16 to 62 s per image on 2 cores, plus the builds.
Leave them out while working on something else with `-m "not fleet"`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.fs.tree import FileTree
from edgetrim.transports import open_image
from tests.conftest import REPO, docker
from tests.dpkg_scan import files_of_unlisted_packages, packages_without_files

FLEET_DIR = REPO / "bench" / "fleet"
sys.path.insert(0, str(FLEET_DIR))
from check_originals import FleetImage, check_image, load_fleet, stderr_tail  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.runtime, pytest.mark.fleet]

MINIMIZE_TIMEOUT = 900.0
FLEET = load_fleet()


def report(result) -> str:
    lines = [f"{result.reference} failed its checks:", *result.failures]
    if result.stderr.strip():
        lines.append(f"container stderr, last lines:\n{stderr_tail(result.stderr)}")
    return "\n".join(lines)


def minimize(image: FleetImage, archive: Path, work: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "edgetrim", "minimize",
        f"docker-daemon:{image.reference('latest')}",
        f"docker-archive:{archive}:{image.reference('min')}",
        *image.minimize_args(), "--work-dir", str(work),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=MINIMIZE_TIMEOUT)


@pytest.mark.parametrize("image", FLEET, ids=[image.name for image in FLEET])
def test_minimized_image_passes_its_checks(image, build_image, runtime_tools, tmp_path):
    original_tag = build_image(FLEET_DIR / image.name, image.reference("latest"))
    original = check_image(image, "latest")
    assert original.passed, report(original)

    archive = tmp_path / "min.tar"
    work = tmp_path / "work"
    work.mkdir()
    result = minimize(image, archive, work)
    assert result.returncode == 0, f"minimize failed:\n{result.stderr[-4000:]}"
    assert not any(work.iterdir()), "minimize left files in its work directory"

    docker("rmi", "--force", image.reference("min"), check=False)
    docker("load", "--input", str(archive), timeout=600)
    minimized = check_image(image, "min")
    assert minimized.passed, report(minimized)

    with (
        open_image(f"docker-daemon:{original_tag}") as before,
        open_image(f"docker-archive:{archive}") as after,
    ):
        before_tree, after_tree = FileTree.from_image(before), FileTree.from_image(after)
        assert after_tree.total_size < before_tree.total_size / 2
        assert packages_without_files(after, after_tree) == []
        assert files_of_unlisted_packages((before, before_tree), (after, after_tree)) == {}
    docker("rmi", "--force", image.reference("min"), check=False)
