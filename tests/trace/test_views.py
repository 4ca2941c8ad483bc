"""Fresh run views: overlayfs mounts in a private mount namespace, and their options."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgetrim.trace.views import Overlay, RunViews, check_overlay

pytestmark = pytest.mark.runtime


def test_overlay_mounts_in_work_dir(runtime_tools, tmp_path):
    options = check_overlay(tmp_path)
    assert options in (("volatile",), ())
    assert list(tmp_path.iterdir()) == []


def test_run_view_is_fresh_and_leaves_snapshot(runtime_tools, tmp_path):
    snapshot = tmp_path / "rootfs"
    snapshot.mkdir(mode=0o751)
    (snapshot / "data").write_text("image\n")
    os.utime(snapshot, ns=(1_700_000_000 * 10**9,) * 2)
    views = RunViews(snapshot, tmp_path, lambda dest: None, check_overlay(tmp_path))
    for _ in range(2):
        view = views.prepare()
        assert view.overlay is not None
        script = (
            "stat -c %a.%Y rootfs; cat rootfs/data; echo run > rootfs/data; echo new > rootfs/new"
        )
        command = view.overlay.mount_command(view.bundle / "rootfs", cwd=view.bundle)
        result = subprocess.run(
            [*command, "sh", "-c", script], cwd=view.bundle, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "751.1700000000\nimage\n"
        assert (view.directory / "upper" / "new").read_text() == "new\n"
    assert (snapshot / "data").read_text() == "image\n"
    assert not (snapshot / "new").exists()
    assert not os.path.ismount(view.bundle / "rootfs")


@pytest.mark.parametrize("name", ["a,b", "a:b", "a\\b"])
def test_overlay_option_separators_rejected(tmp_path: Path, name: str):
    overlay = Overlay(tmp_path / name, tmp_path / "upper", tmp_path / "work")
    with pytest.raises(ValueError, match="contains one of"):
        overlay.mount_command(tmp_path / "merged", cwd=tmp_path)
