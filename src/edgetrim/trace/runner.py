"""Run a bundle with runc, optionally under ``strace -f``, and collect the probe answers."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgetrim.errors import ContainerRunError, ToolMissingError
from edgetrim.trace import strace_log
from edgetrim.trace.probes import (
    HttpProbe,
    ProbeAnswer,
    port_in_use,
    send_http_probe,
    wait_for_port,
)

log = logging.getLogger(__name__)

# Every file syscall, process creation (to follow children into the container) and fchdir.
STRACE_FILTER = "trace=%file,%process,fchdir"
STOP_GRACE_SECONDS = 3.0


@dataclass
class RunResult:
    """The outcome of one container run: probe answers, output, and traced paths if traced."""

    answers: list[ProbeAnswer]
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    trace: strace_log.TraceSummary | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def require_tools(*tools: str) -> None:
    """Raise ToolMissingError naming the Debian package of each missing tool."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise ToolMissingError(f"{tool} is not installed; install the Debian package {tool!r}")


def run_bundle(
    bundle: Path,
    *,
    http_probes: list[HttpProbe],
    timeout: float,
    trace: bool,
    stop_signal: str = "SIGTERM",
) -> RunResult:
    """Run the bundle once and return what the probes and the process produced.

    With HTTP probes the process is a service: it is stopped after the last probe answers.
    Without them it is a job that runs to completion; its exit code and stdout are the answer.
    """
    require_tools("runc", *(["strace"] if trace else []))
    for probe in http_probes:
        if port_in_use(probe.port):
            raise ContainerRunError(
                f"port {probe.port} on 127.0.0.1 is already in use, so the probe could not reach "
                "the container; stop what listens there or probe another port"
            )
    state = bundle.parent / "runc-state"
    container_id = f"edgetrim-{uuid.uuid4().hex[:12]}"
    trace_file = bundle.parent / f"{container_id}.strace"
    command = ["runc", "--root", str(state), "run", "--bundle", str(bundle), container_id]
    if trace:
        command = [
            "strace",
            "-f",
            "-qq",
            "-y",
            "--decode-pids=pidns",
            "-e",
            STRACE_FILTER,
            "-e",
            "signal=none",
            "-o",
            str(trace_file),
            *command,
        ]
    started = time.monotonic()
    deadline = started + timeout
    stdout_path, stderr_path = (
        bundle.parent / f"{container_id}.out",
        bundle.parent / f"{container_id}.err",
    )
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            answers = _drive(process, http_probes, deadline)
            exit_code = _finish(process, state, container_id, http_probes, deadline, stop_signal)
        except ContainerRunError as exc:
            raise ContainerRunError(f"{exc}{_stderr_tail(stderr_path)}") from exc
        finally:
            _force_stop(process, state, container_id)
    result = RunResult(
        answers=answers,
        exit_code=exit_code,
        stdout=stdout_path.read_bytes(),
        stderr=stderr_path.read_bytes(),
        seconds=time.monotonic() - started,
    )
    if not http_probes:
        result.answers = [
            ProbeAnswer("command", exit_code if exit_code is not None else -1, result.stdout)
        ]
    if trace:
        with open(trace_file, encoding="utf-8", errors="surrogateescape") as lines:
            result.trace = strace_log.parse(lines, host_prefixes=(str(bundle.parent),))
    return result


def _stderr_tail(path: Path) -> str:
    """Return the container's last line of stderr, for an error message."""
    lines = path.read_bytes().decode("utf-8", "replace").strip().splitlines()
    return f" (its last line of stderr: {lines[-1].strip()})" if lines else ""


def _drive(
    process: subprocess.Popen, http_probes: list[HttpProbe], deadline: float
) -> list[ProbeAnswer]:
    answers = []
    for probe in http_probes:
        wait_for_port(probe.port, deadline, lambda: process.poll() is None)
        answers.append(send_http_probe(probe, deadline))
    return answers


def _finish(
    process: subprocess.Popen,
    state: Path,
    container_id: str,
    http_probes: list[HttpProbe],
    deadline: float,
    stop_signal: str,
) -> int | None:
    """Let a job run to its end, or stop a service the way `docker stop` does."""
    if not http_probes:
        try:
            return process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired as exc:
            raise ContainerRunError(
                "the container did not exit within the timeout; "
                "raise --timeout or check its command"
            ) from exc
    _runc(state, "kill", container_id, stop_signal.removeprefix("SIG"))
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _runc(state, "kill", container_id, "KILL")
        process.wait(timeout=10)
    return None


def _force_stop(process: subprocess.Popen, state: Path, container_id: str) -> None:
    """Make sure no container or tracer outlives the run, whatever happened."""
    if process.poll() is None:
        _runc(state, "kill", container_id, "KILL")
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _runc(state, "delete", "--force", container_id)


def _runc(state: Path, *args: str) -> None:
    result = subprocess.run(["runc", "--root", str(state), *args], capture_output=True)
    if result.returncode != 0:
        log.debug("runc %s: %s", " ".join(args), result.stderr.decode(errors="replace").strip())
