"""A job that tampers with its rootfs can steer neither the next run nor what is kept.

One minimize of the job in hostile_job/ serves every test here: two --cmd-probe runs whose
arguments start with "-", run through tests/minimize/audited_cli.py, which records every
folder and file the process creates, so that the temporary data can be checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetrim.fs.safetar import iter_contents
from edgetrim.fs.tree import FileTree
from edgetrim.minimize.keeplist import read_keep_list
from edgetrim.transports import open_image
from tests.conftest import REPO, docker

pytestmark = [pytest.mark.docker, pytest.mark.runtime]

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def hostile_job(build_image) -> str:
    return build_image(HERE / "hostile_job", "edgetrim-test/hostile-job:latest")


@pytest.fixture(scope="module")
def minimized(hostile_job, runtime_tools, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("isolation")
    system_tmp, work = base / "system-tmp", base / "work"
    system_tmp.mkdir()
    work.mkdir()
    audit = base / "audit.log"
    archive = base / "min.tar"
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.minimize.audited_cli", str(audit),
            "minimize", f"docker-daemon:{hostile_job}", f"docker-archive:{archive}",
            "--cmd-probe=--first", "--cmd-probe=--second", "--work-dir", str(work),
            "--write-keep-list", str(base / "job.keep"),
        ],
        cwd=REPO, env={**os.environ, "TMPDIR": str(system_tmp)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    keep = dict(read_keep_list(base / "job.keep"))
    return {"result": result, "archive": archive, "keep": keep, "audit": audit,
            "system_tmp": system_tmp, "work": work}  # fmt: skip


def test_runs_start_fresh(minimized):
    stdout = minimized["result"].stdout
    assert "probe command --first: exit code 0" in stdout
    assert "probe command --second: exit code 0" in stdout
    assert "same answer from the minimized image" in stdout


def test_dash_arguments_reach_image(minimized):
    tag = "edgetrim-test/hostile-job:min"
    docker("load", "-i", str(minimized["archive"]))
    docker("tag", load_id(minimized["archive"]), tag)
    output = docker("run", "--rm", "--network=none", tag, "--first").stdout
    assert "args: --first" in output
    assert "report: quarterly" in output


def load_id(archive: Path) -> str:
    with open_image(f"docker-archive:{archive}") as image:
        return str(image.config.digest)


def test_tampered_elf_not_followed(minimized):
    keep = minimized["keep"]
    assert "/usr/local/bin/helper" in keep
    assert not [path for path in keep if "libacl" in path], "tar's libraries were kept"


def test_tampered_ld_so_conf_not_followed(minimized):
    keep = minimized["keep"]
    assert not [path for path in keep if path.startswith("/opt/decoy/")]
    assert any(path.endswith("/libc.so.6") for path in keep)


def test_tampered_status_not_written(minimized, hostile_job):
    with open_image(f"docker-archive:{minimized['archive']}") as image:
        status = read_file(image, "/var/lib/dpkg/status")
    with open_image(f"docker-daemon:{hostile_job}") as image:
        original = read_file(image, "/var/lib/dpkg/status")
    assert "0-tampered" not in status
    libc6 = next(p for p in status.split("\n\n") if p.startswith("Package: libc6\n"))
    original_libc6 = next(p for p in original.split("\n\n") if p.startswith("Package: libc6\n"))
    assert version(libc6) == version(original_libc6)
    assert "Package: dash\n" in status


def version(paragraph: str) -> str:
    return next(line for line in paragraph.splitlines() if line.startswith("Version: "))


def read_file(image, path: str) -> str:
    tree = FileTree.from_image(image)
    source = tree.content_source(path)
    assert source is not None, path
    for _, member in iter_contents(image, {source.layer: {source.path}}):
        chunks: list[bytes] = []
        member.read_content(_Sink(chunks))
        return b"".join(chunks).decode()
    raise AssertionError(f"{path} is not in its layer")


class _Sink:
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def test_file_named_deleted_kept(minimized):
    assert minimized["keep"]["/srv/report (deleted)"] == "touched by the traced run"


def test_temporary_data_in_work_dir(minimized):
    lines = minimized["audit"].read_text().splitlines()
    created = [line.split(" ", 1)[1] for line in lines if line.startswith(("mkdir ", "create "))]
    system_tmp, work = str(minimized["system_tmp"]), str(minimized["work"])
    assert [path for path in created if path.startswith(system_tmp)] == []
    assert any(path.startswith(work + "/") and "edgetrim-daemon-" in path for path in created)
    assert any(path.startswith(work + "/") and "edgetrim-spool-" in path for path in created)
    assert list(minimized["work"].iterdir()) == []


def test_runs_fresh_without_overlayfs(hostile_job, runtime_tools, tmp_path):
    """On a work folder that cannot hold an overlay's upper dir, each run gets its own unpack.

    The work folder is itself an overlayfs mount, which overlayfs rejects as an upper dir. It
    is mounted in a mount namespace of its own, so nothing stays mounted on the host.
    """
    for name in ("lower", "upper", "ovl-work", "work"):
        (tmp_path / name).mkdir()
    script = (
        'mount -t overlay -o "lowerdir=$1/lower,upperdir=$1/upper,workdir=$1/ovl-work" '
        'overlay "$1/work" && shift && exec "$@"'
    )
    result = subprocess.run(
        [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            str(tmp_path), sys.executable, "-m", "edgetrim",
            "minimize", f"docker-daemon:{hostile_job}", f"oci:{tmp_path / 'out'}:min",
            "--cmd-probe=--first", "--cmd-probe=--second", "--work-dir", str(tmp_path / "work"),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "overlayfs cannot be mounted" in result.stderr
    assert "probe command --first: exit code 0" in result.stdout
    assert "probe command --second: exit code 0" in result.stdout
