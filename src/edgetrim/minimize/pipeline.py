"""The minimize pipeline: unpack, trace a run under probes, add dependencies, rebuild, verify."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgetrim.errors import ContainerRunError, InvalidOptionError, VerificationError
from edgetrim.fs.tree import FileTree
from edgetrim.fs.unpack import unpack
from edgetrim.image.model import Image
from edgetrim.minimize.build import build_minimized_image
from edgetrim.minimize.closure import ClosureBuilder, KeepSet
from edgetrim.minimize.verify import compare_answers
from edgetrim.trace.bundle import check_entrypoint, process_spec, write_bundle
from edgetrim.trace.probes import HttpProbe
from edgetrim.trace.runner import RunResult, run_bundle

log = logging.getLogger(__name__)


@dataclass
class MinimizeOptions:
    """How to drive the traced run and what to keep beyond it."""

    http_probes: list[HttpProbe] = field(default_factory=list)
    timeout: float = 60.0
    includes: list[str] = field(default_factory=list)
    verify: bool = True


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
    original_run: RunResult
    minimized_run: RunResult | None
    seconds: float


def image_stats(image: Image, tree: FileTree) -> ImageStats:
    """Count an image's files (directories excluded) and their bytes."""
    files = [
        entry for entry in (tree.get(p) for p in tree) if entry is not None and not entry.is_dir
    ]
    content = sum(entry.size for entry in files if entry.is_regular)
    return ImageStats(len(files), content, image.compressed_size)


def _run_image(
    image: Image, tree: FileTree, work: Path, options: MinimizeOptions, *, trace: bool, source: str
):
    bundle = work / "bundle"
    rootfs = bundle / "rootfs"
    log.info("unpacking %s into %s", source, rootfs)
    unpack(image, tree, rootfs)
    spec = process_spec(image.config, rootfs, source=source)
    check_entrypoint(spec, tree, source=source)
    write_bundle(bundle, spec)
    log.info("running %s%s", source, " under strace" if trace else "")
    result = run_bundle(
        bundle,
        http_probes=options.http_probes,
        timeout=options.timeout,
        trace=trace,
        stop_signal=image.config.container.get("StopSignal") or "SIGTERM",
    )
    return result, rootfs, spec


def minimize(
    image: Image, options: MinimizeOptions, work_dir: Path, *, source: str
) -> MinimizeResult:
    """Minimize ``image``, writing the new layer under ``work_dir``, which must outlive the result.

    Raises VerificationError when the minimized image answers the probes differently.
    """
    started = time.monotonic()
    tree = FileTree.from_image(image)
    original, rootfs, spec = _run_image(
        image, tree, work_dir / "original", options, trace=True, source=source
    )
    _check_run(original, source)
    assert original.trace is not None
    log.info(
        "the traced run touched %d paths in %d processes",
        len(original.trace.paths),
        original.trace.processes,
    )

    closure = ClosureBuilder(tree, rootfs, spec.env)
    closure.add_defaults()
    closure.add_path(check_entrypoint(spec, tree, source=source), "entrypoint")
    closure.add_paths(original.trace.paths, "touched by the traced run")
    closure.add_paths(original.trace.executed, "executed by the traced run")
    for include in options.includes:
        _include(closure, tree, include)
    keep = closure.close()

    total_files = sum(1 for entry in tree.entries() if not entry.is_dir)
    kept_files = sum(1 for entry in tree.entries() if entry.path in keep and not entry.is_dir)
    summary = f"kept {kept_files} of {total_files} files"
    minimized = build_minimized_image(image, tree, keep.paths(), work_dir, kept_summary=summary)
    minimized_tree = FileTree.from_image(minimized)

    minimized_run = None
    if options.verify:
        minimized_run, _, _ = _run_image(
            minimized,
            minimized_tree,
            work_dir / "minimized",
            options,
            trace=False,
            source="minimized image",
        )
        differences = compare_answers(original.answers, minimized_run.answers)
        if differences:
            raise VerificationError(
                "the minimized image answered the probes differently from the original:\n"
                + "\n".join(differences)
                + "\nkeep the missing files with --include PATH, "
                "or write the image anyway with --no-verify"
            )
    return MinimizeResult(
        image=minimized,
        keep=keep,
        before=image_stats(image, tree),
        after=image_stats(minimized, minimized_tree),
        original_run=original,
        minimized_run=minimized_run,
        seconds=time.monotonic() - started,
    )


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


def _check_run(result: RunResult, source: str) -> None:
    """Turn a failure of runc itself (not of the program) into a readable error."""
    stderr = result.stderr.decode("utf-8", "replace")
    if "runc run failed" in stderr or "container_linux.go" in stderr:
        last = stderr.strip().splitlines()[-1]
        raise ContainerRunError(f"{source}: runc could not start the container: {last}")
