"""Run `edgetrim minimize` on every fleet image and record the result, sizes and wall time.

Usage (as root, with the engine running and bench/fleet/build.sh done):
    python3 bench/fleet/minimize_fleet.py [--json FILE] [--out-dir DIR] [NAME ...]

For each image of fleet.toml it runs
    python3 -m edgetrim minimize docker-daemon:edgetrim-fleet/NAME:latest \
        docker-archive:DIR/fleet-NAME-min.tar:edgetrim-fleet/NAME:min PROBE-OPTIONS
with the probe options from fleet.toml, and records the exit code, the last lines of its stderr
and the wall time. A result that minimize wrote is loaded into the engine as
edgetrim-fleet/NAME:min and checked with check_originals.py's expectations. When minimize fails
with exit code 1 (verification), it runs again with --no-verify so that the minimized image can
be loaded and run, and the check's failures and the container's stderr show what is missing.

The original and minimized sizes are what `docker image inspect` reports, the unpacked bytes in
the engine. The archive size is the bytes of the docker-archive tar that minimize wrote, whose
layer is gzip-compressed. Prints a Markdown table, then the details of each failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from check_originals import FleetImage, check_image, docker, load_fleet, select, stderr_tail

VERIFICATION_FAILED = 1
MINIMIZE_LIMIT_SECONDS = 900
ERROR_LINES = 25


@dataclass
class MinimizeRecord:
    """The outcome of `edgetrim minimize` on one fleet image, and of the check of its result."""

    name: str
    probe: str
    exit_code: int
    seconds: float
    original_bytes: int | None
    minimized_bytes: int | None = None
    archive_bytes: int | None = None
    error: str = ""
    no_verify_exit_code: int | None = None
    check_failures: list[str] = field(default_factory=list)
    check_stderr: str = ""

    @property
    def verdict(self) -> str:
        if self.exit_code == 0 and not self.check_failures:
            return "ok"
        if self.exit_code == 0:
            return "ok, but the check fails"
        if self.exit_code == VERIFICATION_FAILED:
            return "exit 1: verification failed"
        return f"exit {self.exit_code}: error"


def image_bytes(reference: str) -> int | None:
    result = docker("image", "inspect", "--format", "{{.Size}}", reference)
    return int(result.stdout) if result.returncode == 0 else None


def run_minimize(image: FleetImage, archive: Path, *extra: str) -> tuple[int, str, float]:
    """Run edgetrim minimize on the image and return exit code, stderr and wall time."""
    command = [
        sys.executable, "-m", "edgetrim", "minimize",
        f"docker-daemon:{image.reference('latest')}",
        f"docker-archive:{archive}:{image.reference('min')}",
        *image.minimize_args(), *extra,
    ]  # fmt: skip
    archive.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=MINIMIZE_LIMIT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return (
            -1,
            f"minimize did not finish within {MINIMIZE_LIMIT_SECONDS} s",
            MINIMIZE_LIMIT_SECONDS,
        )
    return result.returncode, result.stderr, time.monotonic() - started


def load_and_check(image: FleetImage, archive: Path, record: MinimizeRecord) -> None:
    """Load the minimized archive as NAME:min, record its size and run the fleet check on it."""
    docker("rmi", image.reference("min"))
    loaded = docker("load", "--input", str(archive), timeout=600)
    if loaded.returncode != 0:
        record.check_failures.append(f"docker load failed: {loaded.stderr.strip()}")
        return
    record.minimized_bytes = image_bytes(image.reference("min"))
    result = check_image(image, "min")
    record.check_failures = result.failures
    record.check_stderr = result.stderr


def minimize_one(image: FleetImage, out_dir: Path) -> MinimizeRecord:
    archive = out_dir / f"fleet-{image.name}-min.tar"
    code, stderr, seconds = run_minimize(image, archive)
    record = MinimizeRecord(
        name=image.name,
        probe=" ".join(image.minimize_args()),
        exit_code=code,
        seconds=seconds,
        original_bytes=image_bytes(image.reference("latest")),
    )
    if code != 0:
        record.error = "\n".join(stderr.strip().splitlines()[-ERROR_LINES:])
    if code == VERIFICATION_FAILED:
        record.no_verify_exit_code, _, _ = run_minimize(image, archive, "--no-verify")
    if archive.exists() and (code == 0 or record.no_verify_exit_code == 0):
        record.archive_bytes = archive.stat().st_size
        load_and_check(image, archive, record)
    return record


def megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def print_report(records: list[MinimizeRecord]) -> None:
    print("| image | original | probe | minimize result | minimized | minimized archive | time |")
    print("|---|---:|---|---|---:|---:|---:|")
    for r in records:
        print(
            f"| {r.name} | {megabytes(r.original_bytes)} | `{r.probe}` | {r.verdict} "
            f"| {megabytes(r.minimized_bytes)} | {megabytes(r.archive_bytes)} | {r.seconds:.1f} s |"
        )
    for r in records:
        if r.verdict == "ok":
            continue
        print(f"\n## {r.name}: {r.verdict}\n")
        if r.error:
            print(
                "minimize stderr, last lines:\n"
                + "\n".join(f"    {line}" for line in r.error.splitlines())
            )
        if r.no_verify_exit_code is not None:
            print(f"rerun with --no-verify: exit code {r.no_verify_exit_code}")
        for failure in r.check_failures:
            print(f"check of {r.name}:min: {failure}")
        if r.check_stderr.strip():
            print(f"container stderr of {r.name}:min, last lines:\n{stderr_tail(r.check_stderr)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="images to minimize (default: all)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("/tmp"),
        help="where to write fleet-NAME-min.tar (default: /tmp)",
    )
    parser.add_argument("--json", type=Path, help="also write the records to this JSON file")
    options = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", "unix:///run/edgetrim-docker/docker.sock")
    images = select(load_fleet(), options.names)
    records = []
    for image in images:
        print(f"minimizing {image.reference('latest')}", file=sys.stderr)
        records.append(minimize_one(image, options.out_dir))
    print_report(records)
    if options.json:
        options.json.write_text(json.dumps([asdict(r) for r in records], indent=2) + "\n")
    return 0 if all(r.verdict == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
