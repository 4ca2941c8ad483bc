"""Measure `edgetrim minimize` on the bundled examples: sizes before and after, and wall time.

Usage (as root, with the engine from scripts/start-docker.sh running):
    python bench/minimize_examples.py [--runs N]
Prints a Markdown table for docs/benchmarks.md. Sizes are what `docker image inspect` reports
(unpacked bytes in the engine) and the bytes of `docker save | gzip -6` (what a device pulls
over the wire when no layer is cached).
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "python-http": ["--http-probe", "8080/"],
    "batch-job": ["--cmd-probe"],
}


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def saved_gzip_bytes(tag: str) -> int:
    """Bytes of `docker save TAG` compressed with gzip level 6, counted as they stream."""
    process = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
    counter = _Counter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as out:
        while chunk := process.stdout.read(1 << 20):  # type: ignore[union-attr]
            out.write(chunk)
    process.wait()
    return counter.count


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="minimize runs per example (median reported)"
    )
    options = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", "unix:///run/edgetrim-docker/docker.sock")
    subprocess.run([str(REPO / "scripts" / "build-base-image.sh")], check=True)
    print(
        "| example | original (engine) | minimized (engine) | original (gzip save) "
        "| minimized (gzip save) | ratio | minimize wall time, median of runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, probe in EXAMPLES.items():
        tag = f"edgetrim-bench/{name}:latest"
        docker("build", "--network=host", "-q", "-t", tag, str(REPO / "examples" / name))
        minimized = f"edgetrim-bench/{name}:min"
        times = []
        for _ in range(options.runs):
            with tempfile.TemporaryDirectory() as work:
                started = time.monotonic()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "edgetrim",
                        "minimize",
                        f"docker-daemon:{tag}",
                        f"docker-archive:{work}/min.tar:{minimized}",
                        *probe,
                    ],
                    check=True,
                    capture_output=True,
                )
                times.append(time.monotonic() - started)
                docker("load", "-i", f"{work}/min.tar")
        before = int(docker("image", "inspect", "-f", "{{.Size}}", tag))
        after = int(docker("image", "inspect", "-f", "{{.Size}}", minimized))
        before_gz, after_gz = saved_gzip_bytes(tag), saved_gzip_bytes(minimized)
        print(
            f"| {name} | {before / 1e6:.1f} MB | {after / 1e6:.1f} MB | {before_gz / 1e6:.1f} MB "
            f"| {after_gz / 1e6:.1f} MB | {before / after:.1f}x "
            f"| {statistics.median(times):.1f} s |"
        )


if __name__ == "__main__":
    main()
