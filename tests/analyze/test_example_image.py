"""The analysis of a real Debian image built by the engine: examples/batch-job (gcc and headers).

Its Dockerfile installs gcc, libc6-dev and zlib1g-dev and leaves the apt lists, so the
toolchain and package caches must show up as likely unused and be attributed to packages.
"""

from __future__ import annotations

import pytest

from edgetrim.analyze import Category, analyze_image
from edgetrim.transports import open_image
from tests.conftest import REPO

pytestmark = pytest.mark.docker

MB = 1000 * 1000


@pytest.fixture(scope="module")
def batch_job(build_image):
    tag = build_image(REPO / "examples" / "batch-job", "edgetrim-test/batch-job:latest")
    with open_image(f"docker-daemon:{tag}") as image:
        return analyze_image(image, source=tag)


def test_layers_have_history(batch_job):
    steps = [layer.created_by for layer in batch_job.layers]
    assert any("apt-get install -y gcc libc6-dev zlib1g-dev" in step for step in steps)
    assert any("gcc -O2" in step for step in steps)
    assert all(layer.blob_bytes > 0 for layer in batch_job.layers)
    assert sum(layer.content_bytes for layer in batch_job.layers) == batch_job.waste.stored_bytes


def test_docker_save_layers_are_not_compressed(batch_job):
    # The engine exports plain tars, so each blob is its layer tar, and the text report must
    # not call it compressed.
    for layer in batch_job.layers:
        assert layer.compressed is False
        assert layer.blob_bytes == layer.uncompressed_bytes
        assert layer.digest == layer.diff_id
    assert batch_job.blob_bytes == batch_job.uncompressed_bytes


def test_toolchain_packages(batch_job):
    toolchain = {package.name for package in batch_job.packages.toolchain}
    assert {"gcc-12", "cpp-12", "libc6-dev", "zlib1g-dev", "linux-libc-dev"} <= toolchain
    assert "libc6" not in toolchain
    assert "zlib1g" not in toolchain
    largest = batch_job.packages.packages[0]
    assert largest.bytes >= batch_job.packages.packages[-1].bytes
    assert batch_job.waste.likely_unused_by_kind["toolchain"] > 100 * MB


def test_caches_docs_and_categories(batch_job):
    waste = batch_job.waste
    assert waste.likely_unused_by_kind["package_cache"] > 10 * MB  # /var/lib/apt/lists
    assert waste.likely_unused_by_kind["docs"] > 0
    total = (
        waste.in_use_bytes
        + waste.overwritten_bytes
        + waste.deleted_bytes
        + waste.duplicate_bytes
        + waste.likely_unused_bytes
    )
    assert total == waste.stored_bytes
    # The job's own binary and data are in use.
    in_use = {path for copy in batch_job.copies_in(Category.IN_USE) for path in copy.paths}
    assert {"/usr/local/bin/batch-job", "/usr/share/batch-job/readings.csv"} <= in_use


def test_attack_surface(batch_job):
    surface = batch_job.surface
    assert surface.runs_as_root is True
    assert "/usr/bin/bash" in surface.shells
    assert {"/usr/bin/apt-get", "/usr/bin/dpkg"} <= set(surface.package_managers)
    assert "/usr/bin/passwd" in {item.path for item in surface.setuid}
    assert "/usr/local/bin/batch-job" in {item.path for item in surface.elf_executables}
