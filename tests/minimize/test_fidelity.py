"""Metadata survives minimization: capabilities, hardlinks, owners, modes, symlinks, users."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.fs.entry import FileType
from edgetrim.fs.tree import FileTree
from edgetrim.transports import open_image
from tests.conftest import docker
from tests.dpkg_scan import listed_packages, packages_without_files

pytestmark = [pytest.mark.docker, pytest.mark.runtime]

HERE = Path(__file__).parent


def edgetrim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetrim", *args], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def fidelity_image(build_image) -> str:
    return build_image(HERE / "fidelity", "edgetrim-test/fidelity:latest")


@pytest.fixture(scope="module")
def minimized(fidelity_image, runtime_tools, tmp_path_factory) -> dict[str, Path | str]:
    work = tmp_path_factory.mktemp("fidelity")
    archive = work / "min.tar"
    result = edgetrim(
        "minimize", f"docker-daemon:{fidelity_image}",
        f"docker-archive:{archive}:edgetrim-test/fidelity:min",
        "--cmd-probe", "--cmd-probe", "calibrate now", "--include", "/usr/bin/su",
        "--include", "/usr/bin/chage",
        "--write-keep-list", str(work / "fidelity.keep"), "--sbom", str(work / "sbom.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docker("load", "-i", str(archive))
    return {"archive": archive, "keep": work / "fidelity.keep", "sbom": work / "sbom.json",
            "stdout": result.stdout, "work": work}  # fmt: skip


def trees(original_tag: str, archive: Path) -> tuple[FileTree, FileTree]:
    with open_image(f"docker-daemon:{original_tag}") as image:
        before = FileTree.from_image(image)
    with open_image(f"docker-archive:{archive}") as image:
        after = FileTree.from_image(image)
    return before, after


def test_runs_same_in_engine(fidelity_image, minimized):
    original = docker("run", "--rm", "--network=none", fidelity_image)
    result = docker("run", "--rm", "--network=none", "edgetrim-test/fidelity:min")
    assert result.stdout == original.stdout
    assert "bound privileged port" in result.stdout
    assert "hardlinked True 2" in result.stdout
    assert "user sensor" in result.stdout


def test_metadata_kept_exactly(fidelity_image, minimized):
    before, after = trees(fidelity_image, minimized["archive"])  # type: ignore[arg-type]
    for path in after:
        old, new = before.get(path), after.get(path)
        assert old is not None, path
        assert new is not None
        assert (new.type, new.mode, new.uid, new.gid) == (old.type, old.mode, old.uid, old.gid), (
            path
        )
        assert new.xattrs == old.xattrs, path
        if new.type is FileType.SYMLINK:
            assert new.link_target == old.link_target, path
        if (
            new.type is FileType.REGULAR
            and path != "/var/lib/dpkg/status"
            and "/dpkg/info/" not in path
        ):
            assert new.digest == old.digest, path


def test_special_cases_present(fidelity_image, minimized):
    _, after = trees(fidelity_image, minimized["archive"])  # type: ignore[arg-type]
    python = after.get("/opt/app/sensor-python")
    assert python is not None
    assert "security.capability" in python.xattrs
    assert after.get("/opt/app/current").link_target == "data"  # type: ignore[union-attr]
    # The layer writer makes the first path in sorted order the file and the other the link.
    link = after.get("/opt/app/data/calibration.txt")
    assert link is not None
    assert link.type is FileType.HARDLINK
    assert link.link_target == "/opt/app/data/calibration-link.txt"
    tmp = after.get("/tmp")
    assert tmp is not None
    assert tmp.mode == 0o1777
    state_dir = after.get("/var/lib/sensor")
    assert state_dir is not None
    assert (state_dir.uid, state_dir.gid, state_dir.mode) == (991, 991, 0o750)
    run_dir = after.get("/run/sensor")
    assert run_dir is not None
    assert run_dir.mode == 0o750
    su = after.get("/usr/bin/su")
    assert su is not None
    assert su.mode & stat.S_ISUID
    chage = after.get("/usr/bin/chage")
    assert chage is not None
    assert chage.mode & stat.S_ISGID
    bin_link = after.get("/bin")
    assert bin_link is not None
    assert (bin_link.type, bin_link.link_target) == (FileType.SYMLINK, "usr/bin")


def test_user_databases_kept(fidelity_image, minimized):
    before, after = trees(fidelity_image, minimized["archive"])  # type: ignore[arg-type]
    for path in ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf"):
        old, new = before.get(path), after.get(path)
        assert old is not None, path
        assert new is not None, path
        assert new.digest == old.digest, path


def test_second_command_run_traced(minimized):
    assert "probe command calibrate now: exit code 0" in minimized["stdout"]  # type: ignore[operator]


def test_keep_list_replay_same_digest(fidelity_image, minimized, tmp_path):
    first = docker("image", "inspect", "-f", "{{.Id}}", "edgetrim-test/fidelity:min").stdout.strip()
    replay = tmp_path / "replay.tar"
    result = edgetrim(
        "minimize", f"docker-daemon:{fidelity_image}", f"docker-archive:{replay}",
        "--keep-list", str(minimized["keep"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads(subprocess.run(["tar", "-xOf", str(replay), "manifest.json"],
                                         capture_output=True, check=True).stdout)  # fmt: skip
    assert "sha256:" + manifest[0]["Config"].split(".")[0].split("/")[-1] == first


def test_keep_list_reasons(minimized):
    text = Path(minimized["keep"]).read_text()  # type: ignore[arg-type]
    assert text.startswith("edgetrim-keep-list 1\n")
    assert "/opt/app/app.py  # touched by the traced run" in text
    assert "/usr/bin/su  # --include" in text
    assert "DT_NEEDED" in text


def test_package_database_matches_files(fidelity_image, minimized):
    """Read the minimized dpkg database as a scanner would and check it against the files."""
    before, after = trees(fidelity_image, minimized["archive"])  # type: ignore[arg-type]
    with open_image(f"docker-archive:{minimized['archive']}") as image:
        listed = listed_packages(image, after)
        assert packages_without_files(image, after) == []
    assert "libpython3.11-minimal" in listed  # os.py, encodings, socket.py
    assert "util-linux" in listed  # /usr/bin/su, kept by --include
    assert "libcap2-bin" not in listed  # setcap ran at build time only
    assert "apt" not in listed
    assert "Edgetrim-Kept-Files:" in listed["libc6"].paragraph
    sbom = json.loads(Path(minimized["sbom"]).read_text())  # type: ignore[arg-type]
    assert {c["name"] for c in sbom["components"]} == set(listed)
    assert before.get("/usr/sbin/setcap") is not None
