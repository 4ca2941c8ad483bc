"""The minimize pipeline: unpack, trace runs under probes, add dependencies, rebuild, verify."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgetrim.errors import InvalidOptionError, VerificationError
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import unpack
from edgetrim.image.model import Image
from edgetrim.minimize.build import build_minimized_image
from edgetrim.minimize.closure import ClosureBuilder, KeepSet
from edgetrim.minimize.packages import Package, read_packages, rewrite_database
from edgetrim.minimize.rules import apply_rules
from edgetrim.minimize.verify import compare_answers
from edgetrim.trace.bundle import check_entrypoint, process_spec, write_bundle
from edgetrim.trace.probes import ProbeAnswer
from edgetrim.trace.runner import RunResult, ServiceProbes, run_bundle
from edgetrim.trace.strace_log import TraceSummary

log = logging.getLogger(__name__)


@dataclass
class MinimizeOptions:
    """How to drive the runs and what to keep beyond what they touch.

    ``command_runs`` lists job runs, each with the arguments that replace the image's cmd, or
    None for the image's own cmd. Without service probes and command runs, one job run of the
    image's own command is made. ``keep_list`` replays a keep-list instead of tracing: runs are
    then made only to verify, and only when probes or command runs are given.
    """

    service: ServiceProbes = field(default_factory=ServiceProbes)
    command_runs: list[list[str] | None] = field(default_factory=list)
    timeout: float = 60.0
    includes: list[str] = field(default_factory=list)
    verify: bool = True
    keep_list: list[tuple[str, str]] | None = None

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
    seconds: float


def image_stats(image: Image, tree: FileTree) -> ImageStats:
    """Count an image's files (directories excluded) and their bytes."""
    files = [entry for entry in tree.entries() if not entry.is_dir]
    content = sum(entry.size for entry in files if entry.is_regular)
    return ImageStats(len(files), content, image.compressed_size)


class _Runner:
    """Unpack an image once, then run it once per planned run, traced or not."""

    def __init__(
        self, image: Image, tree: FileTree, work: Path, options: MinimizeOptions, source: str
    ):
        self.image, self.tree, self.options, self.source = image, tree, options, source
        self.bundle = work / "bundle"
        self.rootfs = self.bundle / "rootfs"
        log.info("unpacking %s into %s", source, self.rootfs)
        unpack(image, tree, self.rootfs)
        self.spec = process_spec(image.config, self.rootfs, source=source)
        self.entrypoint = check_entrypoint(self.spec, tree, source=source)

    def run_all(self, *, trace: bool) -> tuple[list[ProbeAnswer], TraceSummary]:
        answers: list[ProbeAnswer] = []
        traced = TraceSummary()
        for args, probes in self.options.runs():
            result = self._run(args, probes, trace=trace)
            if args is not None and not probes:
                label = "command " + " ".join(args) if args else "command"
                answers += [ProbeAnswer(label, a.status, a.body) for a in result.answers]
            else:
                answers += result.answers
            if result.trace is not None:
                traced.paths |= result.trace.paths
                traced.executed += result.trace.executed
                traced.processes += result.trace.processes
        return answers, traced

    def _run(self, args: list[str] | None, probes: ServiceProbes, *, trace: bool) -> RunResult:
        spec = process_spec(self.image.config, self.rootfs, source=self.source, args=args)
        check_entrypoint(spec, self.tree, source=self.source)
        write_bundle(self.bundle, spec)
        log.info("running %s%s", self.source, " under strace" if trace else "")
        return run_bundle(
            self.bundle,
            probes=probes,
            timeout=self.options.timeout,
            trace=trace,
            stop_signal=self.image.config.container.get("StopSignal") or "SIGTERM",
        )


def minimize(
    image: Image, options: MinimizeOptions, work_dir: Path, *, source: str
) -> MinimizeResult:
    """Minimize ``image``, writing the new layer under ``work_dir``, which must outlive the result.

    Raises VerificationError when the minimized image answers the probes differently.
    """
    started = time.monotonic()
    tree = FileTree.from_image(image)
    original = _Runner(image, tree, work_dir / "original", options, source)
    answers, traced = original.run_all(trace=options.keep_list is None)
    closure = ClosureBuilder(tree, original.rootfs, original.spec.env)
    if options.keep_list is None:
        log.info(
            "the traced runs touched %d paths in %d processes", len(traced.paths), traced.processes
        )
        closure.add_defaults()
        closure.add_path(original.entrypoint, "entrypoint")
        closure.add_paths(traced.paths, "touched by the traced run")
        closure.add_paths(traced.executed, "executed by the traced run")
        for include in options.includes:
            _include(closure, tree, include)
        apply_rules(closure)
    else:
        _replay(closure, tree, options.keep_list, options.includes)
    packages = read_packages(closure)
    replacements = rewrite_database(closure, packages)
    keep = closure.close()

    total = sum(1 for entry in tree.entries() if not entry.is_dir)
    kept = sum(1 for entry in tree.entries() if entry.path in keep and not entry.is_dir)
    minimized = build_minimized_image(
        image, tree, keep.paths(), work_dir, kept_summary=f"kept {kept} of {total} files",
        replacements=replacements,
    )  # fmt: skip
    minimized_tree = FileTree.from_image(minimized)
    verified = False
    if options.verify and options.runs():
        rerun = _Runner(
            minimized, minimized_tree, work_dir / "minimized", options, "minimized image"
        )
        minimized_answers, _ = rerun.run_all(trace=False)
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
        seconds=time.monotonic() - started,
    )


def _compare(expected: list[ProbeAnswer], actual: list[ProbeAnswer]) -> None:
    differences = compare_answers(expected, actual)
    if differences:
        raise VerificationError(
            "the minimized image answered the probes differently from the original:\n"
            + "\n".join(differences)
            + "\nkeep the missing files with --include PATH, "
            "or write the image anyway with --no-verify"
        )


def _replay(
    closure: ClosureBuilder, tree: FileTree, entries: list[tuple[str, str]], includes: list[str]
) -> None:
    """Keep the paths of a keep-list; a path missing from the image is an error."""
    missing = [path for path, _ in entries if tree.resolve(path).path is None]
    if missing:
        raise InvalidOptionError(
            f"--keep-list: {len(missing)} listed paths are not in the image, "
            f"such as {missing[0]!r}; "
            "the list was made from another image, so trace this one again"
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
