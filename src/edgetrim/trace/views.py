"""A fresh root filesystem for every container run, over one unpacked copy that no run changes.

The unpacked image (the snapshot) is what edgetrim later reads to close over dependencies and to
rewrite the package database, so no run may write to it, and no run may see what an earlier run
wrote. With overlayfs, the snapshot is the read-only lower directory and each run writes to an
empty upper directory of its own. The overlay is mounted in a private mount namespace that
``unshare`` creates for ``runc run``, so it disappears with the run's processes and is never
mounted in the host's namespace, even when edgetrim is killed. Where overlayfs cannot be
mounted (the work directory is on a filesystem that cannot hold an upper directory, or mounting
is not permitted), each run gets a fresh unpack of the image instead, which is slower.

The overlay is mounted ``volatile`` (Linux 5.10 and later) where the kernel accepts it. Without
that option, unmounting an overlay syncs the whole filesystem of the upper directory, which
took 0.4 to 1.6 s per run on an ext4 work directory right after a 900 MB unpack.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The line the mount step writes to stderr when it fails, so that the failure is not taken for
# the exit code of the container's process.
MOUNT_FAILURE = "edgetrim-mount: mounting the overlay failed"
# Mounts the overlay ("$1" options, "$2" target, both relative to the working directory) in the
# namespace that unshare made, then becomes the command that follows.
_MOUNT_SCRIPT = (
    'mount -t overlay -o "$1" overlay "$2" || { echo "' + MOUNT_FAILURE + '" >&2; exit 125; }; '
    'shift 2; exec "$@"'
)
# overlayfs splits its options at "," and lower directories at ":", and a backslash escapes.
_OPTION_SPECIALS = frozenset(",:\\")


@dataclass(frozen=True)
class Overlay:
    """One overlayfs mount: the read-only lower, the upper and its work dir, extra options."""

    lower: Path
    upper: Path
    work: Path
    options: tuple[str, ...] = ()

    def create(self, target: Path) -> None:
        """Create the empty upper, work and mount-point directories.

        The upper directory becomes the root directory of the merged view, so it gets the
        owner, mode and mtime of the lower root: the container's ``/`` stays as the image has it.
        """
        root = os.stat(self.lower, follow_symlinks=False)
        for directory in (self.upper, self.work, target):
            directory.mkdir(mode=0o700)
        os.chown(self.upper, root.st_uid, root.st_gid)
        os.chmod(self.upper, root.st_mode & 0o7777)
        os.utime(self.upper, ns=(root.st_atime_ns, root.st_mtime_ns))

    def mount_command(self, target: Path, *, cwd: Path) -> list[str]:
        """Return the command prefix that mounts the overlay at ``target`` and runs the rest.

        Paths are relative to ``cwd``, the working directory of the command, which keeps the
        mount options short and free of the characters overlayfs treats as separators.
        """
        names = {
            "lowerdir": os.path.relpath(self.lower, cwd),
            "upperdir": os.path.relpath(self.upper, cwd),
            "workdir": os.path.relpath(self.work, cwd),
        }
        for key, value in names.items():
            if _OPTION_SPECIALS & set(value):
                raise ValueError(f"overlay {key} {value!r} contains one of , : \\")
        options = ",".join([*(f"{key}={value}" for key, value in names.items()), *self.options])
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", _MOUNT_SCRIPT, "edgetrim-mount", options, os.path.relpath(target, cwd),
        ]  # fmt: skip


def check_overlay(work: Path) -> tuple[str, ...]:
    """Return the extra options with which an overlay mounts under ``work``.

    Mounts a small overlay in a throwaway namespace, first ``volatile``, then without extra
    options. Raises OSError with the reason, in one line, when neither mounts.
    """
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            raise OSError(f"{tool} is not installed (Debian package util-linux or mount)")
    problem = ""
    for options in (("volatile",), ()):
        problem = _try_overlay(work / "overlay-check", options)
        if not problem:
            return options
    raise OSError(problem)


def _try_overlay(check: Path, options: tuple[str, ...]) -> str:
    """Mount an overlay of empty directories in ``check``; return the error, or "" on success."""
    check.mkdir()
    try:
        lower = check / "lower"
        lower.mkdir()
        overlay = Overlay(lower, check / "upper", check / "work", options)
        overlay.create(check / "merged")
        command = overlay.mount_command(check / "merged", cwd=check) + ["true"]
        result = subprocess.run(command, cwd=check, capture_output=True, text=True)
    except OSError as exc:
        return f"cannot prepare the overlay directories: {exc}"
    finally:
        # overlayfs leaves work/work with mode 000, which rmtree removes as root.
        shutil.rmtree(check, ignore_errors=True)
    if result.returncode == 0:
        return ""
    lines = [line for line in result.stderr.strip().splitlines() if line != MOUNT_FAILURE]
    return lines[0].strip() if lines else f"mount exited with {result.returncode}"


@dataclass(frozen=True)
class RunView:
    """The directory of one run and its bundle, whose ``rootfs`` is fresh for this run.

    ``overlay`` is set when ``rootfs`` is only a mount point that the run's command mounts.
    """

    directory: Path
    bundle: Path
    overlay: Overlay | None


class RunViews:
    """Hand out a fresh root filesystem per run over the unpacked ``snapshot``.

    ``overlay_options`` are those that :func:`check_overlay` returned for ``work``; None means
    that overlayfs is not available, and ``unpack_copy`` then writes a full copy of the image
    into a new directory for each run.
    """

    def __init__(
        self,
        snapshot: Path,
        work: Path,
        unpack_copy: Callable[[Path], None],
        overlay_options: tuple[str, ...] | None,
    ):
        self.snapshot = snapshot
        self.work = work
        self._unpack_copy = unpack_copy
        self._options = overlay_options
        self._runs = 0

    def prepare(self) -> RunView:
        """Create the next run's directory, with a bundle whose rootfs no run has written."""
        self._runs += 1
        directory = self.work / f"run-{self._runs}"
        bundle = directory / "bundle"
        bundle.mkdir(parents=True)
        if self._options is None:
            self._unpack_copy(bundle / "rootfs")
            return RunView(directory, bundle, None)
        overlay = Overlay(
            self.snapshot, directory / "upper", directory / "overlay-work", self._options
        )
        overlay.create(bundle / "rootfs")
        return RunView(directory, bundle, overlay)
