"""minimize's command line: registry options, --work-dir, DEST checks and keep-list replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.commands import edgetrim, one_error_line
from tests.transports.registry_server import Registry


def write_keep_list(path: Path, *paths: str) -> Path:
    path.write_text("\n".join(["edgetrim-keep-list 1", *paths]) + "\n")
    return path


def test_help_lists_registry_options():
    result = edgetrim("minimize", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--ca-cert", "--insecure", "--platform"):
        assert option in result.stdout


def test_dest_same_as_source(tmp_path):
    archive = tmp_path / "same.tar"
    reference = f"docker-archive:{archive}"
    line = one_error_line(edgetrim("minimize", reference, reference))
    assert f"DEST {reference} is the same as SOURCE" in line


def test_work_dir_parent_missing(tmp_path):
    work = tmp_path / "absent" / "work"
    line = one_error_line(
        edgetrim(
            "minimize",
            f"docker-archive:{tmp_path / 'in.tar'}",
            f"docker-archive:{tmp_path / 'out.tar'}",
            "--work-dir",
            str(work),
        )  # fmt: skip
    )
    assert f"its parent folder {tmp_path / 'absent'} does not exist" in line
    assert not (tmp_path / "absent").exists()


@pytest.mark.docker
def test_keep_list_missing_path_named(base_image, tmp_path):
    keep_list = write_keep_list(tmp_path / "list.keep", "/usr/bin/dash", "/no/such/file")
    line = one_error_line(
        edgetrim(
            "minimize",
            f"docker-daemon:{base_image}",
            f"oci:{tmp_path / 'out'}:min",
            "--keep-list",
            str(keep_list),
        )  # fmt: skip
    )
    assert f"--keep-list {keep_list}: the listed path '/no/such/file' is not in the image" in line
    assert "another image" in line
    assert "paths" not in line


@pytest.mark.docker
def test_replay_without_probes_unverified(base_image, tmp_path):
    """A replay makes no run, as the summary reports. A missing --work-dir is made and removed."""
    keep_list = write_keep_list(tmp_path / "list.keep", "/usr/bin/dash")
    work = tmp_path / "work"
    result = edgetrim(
        "minimize", f"docker-daemon:{base_image}", f"oci:{tmp_path / 'out'}:min",
        "--keep-list", str(keep_list), "--work-dir", str(work),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "not verified: no run was made" in result.stdout
    assert not work.exists()


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("plain-registry")) as registry:
        yield registry


@pytest.mark.docker
@pytest.mark.runtime
def test_insecure_reads_and_writes_registry(plain_registry, base_image, runtime_tools):
    source = f"docker://{plain_registry.host}/minimize/base:1"
    dest = f"docker://{plain_registry.host}/minimize/base:min"
    pushed = edgetrim("copy", "--insecure", f"docker-daemon:{base_image}", source)
    assert pushed.returncode == 0, pushed.stderr

    rejected = one_error_line(edgetrim("minimize", source, dest, "--cmd-probe=/bin/echo hi"))
    assert "--insecure" in rejected

    result = edgetrim("minimize", "--insecure", source, dest, "--cmd-probe=/bin/echo hi")
    assert result.returncode == 0, result.stderr
    assert f"wrote {dest}" in result.stdout
    check = edgetrim("analyze", "--insecure", "--json", dest)
    assert check.returncode == 0, check.stderr
