"""The minimize pipeline: unpack, trace runs under probes, add dependencies, rebuild, verify."""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgetrim.analyze.result import AttackSurface
from edgetrim.errors import ContainerRunError, InvalidOptionError, VerificationError
from edgetrim.fs.beneath import RootfsReader
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import remove_tree, unpack
from edgetrim.image.model import Image
from edgetrim.minimize.build import build_minimized_image
from edgetrim.minimize.closure import ClosureBuilder, KeepSet
from edgetrim.minimize.packages import Package, read_packages, rewrite_database
from edgetrim.minimize.rules import apply_rules
from edgetrim.minimize.surface import tree_surface
from edgetrim.minimize.verify import compare_answers
from edgetrim.trace.bundle import (
    ProcessSpec,
    check_entrypoint,
    find_program,
    process_env,
    process_spec,
    write_bundle,
)
from edgetrim.trace.platforms import check_runnable
from edgetrim.trace.probes import ProbeAnswer
from edgetrim.trace.runner import RunResult, ServiceProbes, finish_cleanup, run_bundle
from edgetrim.trace.strace_log import TraceSummary
from edgetrim.trace.views import RunViews, check_overlay

log = logging.getLogger(__name__)


@dataclass
class MinimizeOptions:
    """How to drive the runs and what to keep beyond what they touch.

    ``command_runs`` lists job runs, each with the arguments that replace the image's cmd, or
    None for the image's own cmd. Without service probes and command runs, one job run of the
    image's own command is made. ``keep_list`` replays a keep-list instead of tracing: runs are
    then made only to verify, and only when probes or command runs are given.
    ``keep_list_path`` names the keep-list's file in messages.
    """

    service: ServiceProbes = field(default_factory=ServiceProbes)
    command_runs: list[list[str] | None] = field(default_factory=list)
    timeout: float = 60.0
    includes: list[str] = field(default_factory=list)
    verify: bool = True
    keep_list: list[tuple[str, str]] | None = None
    keep_list_path: Path | None = None

    def runs(self) -> list[tuple[list[str] | None, ServiceProbes]]:
        """Return each run to make: replacement cmd (None: the image's) and its service probes."""
        runs: list[tuple[list[str] | None, ServiceProbes]] = []
        if self.service:
            runs.append((None, self.service))
        runs += [(args, ServiceProbes()) for args in self.command_runs]
        if not runs and self.keep_list is None:
            runs.append((None, ServiceProbes()))
        return runs


@dataclass
class ImageStats:
    """Size figures of one image: file count, bytes of file content, bytes of stored blobs."""

    files: int
    content_bytes: int
    blob_bytes: int


@dataclass
class MinimizeResult:
    """The minimized image and what it took to make it."""

    image: Image
    keep: KeepSet
    before: ImageStats
    after: ImageStats
    answers: list[ProbeAnswer]
    verified: bool
    packages: list[Package]
    surface_before: AttackSurface
    surface_after: AttackSurface
    seconds: float


def image_stats(image: Image, tree: FileTree) -> ImageStats:
    """Count an image's files (directories excluded) and their bytes."""
    files = [entry for entry in tree.entries() if not entry.is_dir]
    content = sum(entry.size for entry in files if entry.is_regular)
    return ImageStats(len(files), content, image.compressed_size)


class _Runner:
    """Unpack an image once into a snapshot, then run it once per planned run, traced or not.

    No run writes to the snapshot or finds what another run wrote, because each run gets a
    fresh view of it (see :mod:`edgetrim.trace.views`). The snapshot therefore stays as the
    image has it, and ``files`` reads it for the closure, the package database and the user
    lookup. Every planned run's program is looked up before the first run, so a missing one
    fails at once.
    """

    def __init__(
        self,
        image: Image,
        tree: FileTree,
        work: Path,
        options: MinimizeOptions,
        source: str,
        *,
        overlay_options: tuple[str, ...] | None,
    ):
        self.image, self.tree, self.options, self.source = image, tree, options, source
        self.snapshot = work / "rootfs"
        log.info("unpacking %s into %s", source, self.snapshot)
        unpack(image, tree, self.snapshot)
        self.files = RootfsReader(tree, self.snapshot)
        self.runs: list[tuple[list[str] | None, ServiceProbes, ProcessSpec]] = []
        # The path of each run's program, before symlinks, and what runs it.
        self.programs: list[tuple[str, str]] = []
        for args, probes in options.runs():
            spec = process_spec(image.config, self.files, source=source, args=args)
            program = check_entrypoint(spec, tree, source=source)
            self.runs.append((args, probes, spec))
            label = "entrypoint" if args is None else f"program of --cmd-probe {shlex.join(args)}"
            self.programs.append((program, label))
        self._views = RunViews(self.snapshot, work, self._fresh_copy, overlay_options)

    def own_program(self) -> str | None:
        """Return the path of the program of the image's own ENTRYPOINT and CMD, if it has one."""
        config = self.image.config
        if not config.entrypoint and not config.cmd:
            return None
        spec = process_spec(config, self.files, source=self.source)
        return find_program(spec, self.tree)

    def _fresh_copy(self, dest: Path) -> None:
        log.info("unpacking a fresh copy of %s into %s", self.source, dest)
        unpack(self.image, self.tree, dest)

    def run_all(self, *, trace: bool) -> tuple[list[ProbeAnswer], TraceSummary]:
        answers: list[ProbeAnswer] = []
        traced = TraceSummary()
        for args, probes, spec in self.runs:
            result = self._run(spec, probes, trace=trace)
            if args is not None and not probes:
                label = "command " + shlex.join(args) if args else "command"
                answers += [ProbeAnswer(label, a.status, a.body, a.detail) for a in result.answers]
            else:
                answers += result.answers
            if result.trace is not None:
                traced.paths |= result.trace.paths
                traced.listed |= result.trace.listed
                traced.executed += result.trace.executed
                traced.processes += result.trace.processes
        return answers, traced

    def _run(self, spec: ProcessSpec, probes: ServiceProbes, *, trace: bool) -> RunResult:
        view = self._views.prepare()
        try:
            write_bundle(view.bundle, spec)
            log.info("running %s%s", self.source, " under strace" if trace else "")
            try:
                result = run_bundle(
                    view.bundle,
                    probes=probes,
                    timeout=self.options.timeout,
                    trace=trace,
                    stop_signal=self.image.config.container.get("StopSignal") or "SIGTERM",
                    overlay=view.overlay,
                )
            finally:
                _check_space_left(view.directory, self.source)
        finally:
            finish_cleanup(lambda: _remove_run_folder(view.directory))
        _check_started(result, self.source)
        return result


def minimize(
    image: Image, options: MinimizeOptions, work_dir: Path, *, source: str
) -> MinimizeResult:
    """Minimize ``image``, writing the new layer under ``work_dir``, which must outlive the result.

    Raises VerificationError when the minimized image responds to the probes differently.
    """
    started = time.monotonic()
    work_dir = work_dir.absolute()
    if options.runs():
        check_runnable(image.config.platform, source=source)
    overlay_options = _overlay_options(work_dir) if options.runs() else None
    tree = FileTree.from_image(image)
    original = _Runner(
        image, tree, work_dir / "original", options, source, overlay_options=overlay_options
    )
    answers, traced = original.run_all(trace=options.keep_list is None)
    _check_expected_status(options.service, answers, source)
    _warn_failed_commands(answers, source)
    closure = ClosureBuilder(original.files, process_env(image.config))
    if options.keep_list is None:
        log.info(
            "the traced runs touched %d paths in %d processes", len(traced.paths), traced.processes
        )
        closure.add_defaults()
        own_program = original.own_program()
        if own_program is not None:
            closure.add_path(own_program, "entrypoint")
        for program, label in original.programs:
            closure.add_path(program, label)
        closure.add_paths(traced.paths, "touched by the traced run")
        closure.add_paths(traced.executed, "executed by the traced run")
        closure.add_listings(traced.listed, traced.paths)
        for include in options.includes:
            _include(closure, tree, include)
        apply_rules(closure)
    else:
        _replay(closure, tree, options.keep_list, options.includes, options.keep_list_path)
    packages = read_packages(closure)
    replacements = rewrite_database(closure, packages)
    keep = closure.close()

    total = sum(1 for entry in tree.entries() if not entry.is_dir)
    kept = sum(1 for entry in tree.entries() if entry.path in keep and not entry.is_dir)
    log.info("writing the minimized layer with %d of %d files", kept, total)
    minimized = build_minimized_image(
        image, tree, keep.paths(), work_dir, kept_summary=f"kept {kept} of {total} files",
        replacements=replacements, content_root=original.snapshot,
    )  # fmt: skip
    minimized_tree = FileTree.from_image(minimized)
    passwd = closure.read_text("/etc/passwd").encode()
    user = image.config.user
    surface_before = tree_surface(tree, original.snapshot, user, passwd)
    surface_after = tree_surface(minimized_tree, original.snapshot, user, passwd)
    log.info("removing %s", original.snapshot)
    remove_tree(original.snapshot)
    verified = False
    if options.verify and options.runs():
        try:
            rerun = _Runner(
                minimized, minimized_tree, work_dir / "minimized", options, "minimized image",
                overlay_options=overlay_options,
            )  # fmt: skip
            minimized_answers, _ = rerun.run_all(trace=False)
        except ContainerRunError as exc:
            raise VerificationError(
                f"a run that the original image completed failed on the minimized image: {exc}; "
                "keep the missing files with --include PATH, or write the image anyway with "
                "--no-verify"
            ) from exc
        _compare(answers, minimized_answers)
        verified = True
    return MinimizeResult(
        image=minimized,
        keep=keep,
        before=image_stats(image, tree),
        after=image_stats(minimized, minimized_tree),
        answers=answers,
        verified=verified,
        packages=packages,
        surface_before=surface_before,
        surface_after=surface_after,
        seconds=time.monotonic() - started,
    )


def _remove_run_folder(folder: Path) -> None:
    """Remove a run's folder; a failure is logged, so that it hides no error of the run."""
    try:
        remove_tree(folder)
    except OSError as exc:
        log.warning("could not remove %s (%s), which stays in the work folder", folder, exc)


# A run that leaves less than this free in the work folder's filesystem most likely failed a
# write for lack of space, so its probe results and its trace do not show what the image does.
MIN_FREE_BYTES = 1 << 20


def _check_space_left(folder: Path, source: str) -> None:
    """Raise ContainerRunError when the filesystem of a run's ``folder`` is (nearly) full.

    The run writes its files there, and a write that failed for lack of space could change
    the probe results without any sign of the failure in them.
    """
    stats = os.statvfs(folder)
    # Root may also use the blocks that the filesystem reserves for it.
    blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
    # Filesystems without an inode limit, such as btrfs, report 0 inodes in all.
    inodes_left = stats.f_files == 0 or stats.f_favail > 0
    if blocks * stats.f_frsize >= MIN_FREE_BYTES and inodes_left:
        return
    raise ContainerRunError(
        f"{source}: the work folder's filesystem ({folder.parent}) filled up during the run, "
        "so the run may have failed for lack of space; free space there or pass --work-dir "
        "on a larger filesystem"
    )


def _overlay_options(work_dir: Path) -> tuple[str, ...] | None:
    """Check once whether runs can get overlayfs views in ``work_dir``; None if they cannot."""
    try:
        return check_overlay(work_dir)
    except OSError as exc:
        log.warning(
            "overlayfs cannot be mounted in %s (%s); each run gets a fresh unpack of the "
            "image instead, which is slower",
            work_dir,
            exc,
        )
        return None


# runc prints this when it could not start the process (exec format error, missing
# interpreter, permission denied); the process's own exit code would hide it.
_RUNC_START_FAILURE = "runc run failed"
# runc 1.1 (checked with 1.1.5) reports a failed execve of the container's process on the
# process's stderr instead, as "exec /hello: exec format error", and exits with code 1.
_EXEC_FAILURE = re.compile(
    r"exec (?P<program>.+): (?P<reason>exec format error|no such file or directory|"
    r"permission denied|not a directory|text file busy)"
)


def _check_started(result: RunResult, source: str) -> None:
    """Raise ContainerRunError when runc itself failed to start the container's process."""
    stderr = result.stderr.decode("utf-8", "replace")
    for line in stderr.splitlines():
        if _RUNC_START_FAILURE in line:
            detail = line.split("msg=", 1)[-1].strip().strip('"')
            raise ContainerRunError(f"{source}: runc could not start the image's process: {detail}")
        failed_exec = _EXEC_FAILURE.fullmatch(line.strip())
        if failed_exec and result.exit_code not in (None, 0):
            raise ContainerRunError(
                f"{source}: runc could not start the image's process "
                f"{failed_exec['program']!r}: {failed_exec['reason']}"
            )


def _warn_failed_commands(answers: list[ProbeAnswer], source: str) -> None:
    """Log a warning for each command probe that exited non-zero on the original image.

    The minimized image then only has to fail the same way, which shows little about what the
    program needs. It is no error, because some commands exit non-zero by design, such as a
    tool that prints its usage with exit code 2.
    """
    for answer in answers:
        if answer.status_name != "exit code" or answer.status == 0:
            continue
        stderr = f" (last line of stderr: {answer.detail})" if answer.detail else ""
        log.warning(
            "%s: probe %s exited with code %d on the original image%s; the minimized image "
            "only has to fail the same way, so check that this failure is expected",
            source,
            answer.probe,
            answer.status,
            stderr,
        )


def _check_expected_status(service: ServiceProbes, answers: list[ProbeAnswer], source: str) -> None:
    """Raise ContainerRunError if the original image did not return a probe's ``status=N``."""
    by_probe = {answer.probe: answer for answer in answers}
    for probe in service.http:
        answer = by_probe.get(str(probe))
        if probe.expect_status is not None and answer and answer.status != probe.expect_status:
            raise ContainerRunError(
                f"{source}: {probe} returned status {answer.status}, but the probe expects "
                f"{probe.expect_status}; fix the probe or the image before minimizing"
            )


def _compare(expected: list[ProbeAnswer], actual: list[ProbeAnswer]) -> None:
    differences = compare_answers(expected, actual)
    if differences:
        raise VerificationError(
            "the minimized image responded to the probes differently from the original:\n"
            + "\n".join(differences)
            + "\nkeep the missing files with --include PATH, "
            "or write the image anyway with --no-verify"
        )


def _replay(
    closure: ClosureBuilder,
    tree: FileTree,
    entries: list[tuple[str, str]],
    includes: list[str],
    keep_list_path: Path | None,
) -> None:
    """Keep the paths of a keep-list; a path missing from the image is an error."""
    missing = [path for path, _ in entries if tree.resolve(path, follow_last=False).path is None]
    if missing:
        option = f"--keep-list {keep_list_path}" if keep_list_path else "--keep-list"
        if len(missing) == 1:
            problem = f"the listed path {missing[0]!r} is not in the image"
        else:
            problem = f"{len(missing)} listed paths are not in the image, such as {missing[0]!r}"
        raise InvalidOptionError(
            f"{option}: {problem}; fix the list, or, if it was written for another image, "
            "trace this image again with --write-keep-list"
        )
    for path, reason in entries:
        closure.add_path(path, reason or "listed in the keep-list")
    for include in includes:
        _include(closure, tree, include)
    closure.close()


def _include(closure: ClosureBuilder, tree: FileTree, include: str) -> None:
    """Keep an --include path and, for a directory, everything under it."""
    path = "/" + include.strip("/")
    resolution = tree.resolve(path)
    if resolution.path is None:
        raise InvalidOptionError(
            f"--include {include!r}: no such path in the image; check the spelling"
        )
    closure.add_path(path, "--include")
    prefix = resolution.path.rstrip("/") + "/"
    for candidate in tree:
        if candidate.startswith(prefix):
            closure.add_path(candidate, f"under --include {path}")
