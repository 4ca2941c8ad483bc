"""Run a bundle with runc, optionally under ``strace -f``, and collect the probe results."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgetrim.errors import ContainerRunError, ToolMissingError
from edgetrim.trace import strace_log
from edgetrim.trace.probes import (
    ExecProbe,
    HostProbe,
    HttpProbe,
    ProbeAnswer,
    TcpProbe,
    bounded_output,
    port_in_use,
    send_http_probe,
    wait_for_port,
)
from edgetrim.trace.views import MOUNT_FAILURE, Overlay

log = logging.getLogger(__name__)

# Every file syscall, process creation (to follow children into the container), fchdir,
# setns (how `runc exec` enters a running container) and directory listings.
STRACE_FILTER = "trace=%file,%process,fchdir,setns,getdents,getdents64"
STOP_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class ServiceProbes:
    """The probes of one service run, sent in this order: TCP, HTTP, exec, host."""

    tcp: tuple[TcpProbe, ...] = ()
    http: tuple[HttpProbe, ...] = ()
    exec: tuple[ExecProbe, ...] = ()
    host: tuple[HostProbe, ...] = ()
    duration: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.tcp or self.http or self.exec or self.host)

    @property
    def ports(self) -> list[int]:
        return sorted({p.port for p in self.tcp} | {p.port for p in self.http})


@dataclass
class RunResult:
    """The outcome of one container run: probe results, output, and traced paths if traced."""

    answers: list[ProbeAnswer]
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    trace: strace_log.TraceSummary | None = None
    seconds: float = 0.0


def require_tools(*tools: str) -> None:
    """Raise ToolMissingError naming the Debian package of each missing tool."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise ToolMissingError(f"{tool} is not installed; install the Debian package {tool!r}")


class _Run:
    """One `runc run` of a bundle, with the files and ids it needs."""

    def __init__(self, bundle: Path, *, trace: bool):
        self.bundle = bundle
        self.trace = trace
        self.state = bundle.parent / "runc-state"
        self.id = f"edgetrim-{uuid.uuid4().hex[:12]}"
        self.trace_files: list[Path] = []
        self.stdout_path = bundle.parent / f"{self.id}.out"
        self.stderr_path = bundle.parent / f"{self.id}.err"
        self._probe_outputs = 0

    def probe_output(self) -> tuple[Path, Path]:
        """Return new files for the stdout and stderr of one exec or host probe."""
        self._probe_outputs += 1
        stem = self.bundle.parent / f"{self.id}.probe-{self._probe_outputs}"
        return stem.with_suffix(".out"), stem.with_suffix(".err")

    def traced(self, command: list[str]) -> list[str]:
        if not self.trace:
            return command
        trace_file = self.bundle.parent / f"{self.id}.{len(self.trace_files)}.strace"
        self.trace_files.append(trace_file)
        return [
            "strace", "-f", "-qq", "-y", "--decode-pids=pidns", "-e", STRACE_FILTER,
            "-e", "signal=none", "-o", str(trace_file), *command,
        ]  # fmt: skip

    def runc(self, *args: str) -> list[str]:
        return ["runc", "--root", str(self.state), *args]

    def summary(self) -> strace_log.TraceSummary | None:
        if not self.trace:
            return None
        total = strace_log.TraceSummary()
        for path in self.trace_files:
            with open(path, encoding="utf-8", errors="surrogateescape") as lines:
                part = strace_log.parse(lines, host_prefixes=(str(self.bundle.parent),))
            total.paths |= part.paths
            total.listed |= part.listed
            total.executed += part.executed
            total.processes += part.processes
        return total

    def stderr_tail(self) -> str:
        line = _last_line(self.stderr_path)
        return f" (its last line of stderr: {line.strip()})" if line else ""

    def mount_failed(self) -> bool:
        """Tell whether the overlay mount before `runc run` failed; its message comes first."""
        with open(self.stderr_path, "rb") as stream:
            return MOUNT_FAILURE.encode() in stream.read(65536)


def run_bundle(
    bundle: Path,
    *,
    probes: ServiceProbes,
    timeout: float,
    trace: bool,
    stop_signal: str = "SIGTERM",
    overlay: Overlay | None = None,
) -> RunResult:
    """Run the bundle once and return what the probes and the process produced.

    With service probes the process is a service: it is stopped after the last probe and the
    probe duration. Without them it is a job that runs to completion; its exit code and stdout
    are the result. With ``overlay``, ``bundle/rootfs`` is an empty mount point, and the
    overlay is mounted there in a mount namespace that only this run uses.
    """
    require_tools("runc", *(["strace"] if trace else []))
    for port in probes.ports:
        if port_in_use(port):
            raise ContainerRunError(
                f"port {port} on 127.0.0.1 is already in use, so a probe could not reach the "
                "container; stop what listens there or probe another port"
            )
    run = _Run(bundle, trace=trace)
    started = time.monotonic()
    deadline = started + timeout
    command = run.traced(run.runc("run", "--bundle", str(bundle), run.id))
    if overlay is not None:
        command = overlay.mount_command(bundle / "rootfs", cwd=bundle) + command
    with open(run.stdout_path, "wb") as out, open(run.stderr_path, "wb") as err:
        process = subprocess.Popen(
            command, cwd=bundle, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            answers = _probe(run, process, probes, deadline) if probes else []
            exit_code = _finish(run, process, probes, deadline, stop_signal)
        except ContainerRunError as exc:
            raise ContainerRunError(f"{exc}{run.stderr_tail()}") from exc
        finally:
            _force_stop(run, process)
    if overlay is not None and run.mount_failed():
        raise ContainerRunError(
            f"could not mount the overlay root filesystem of the run{run.stderr_tail()}; "
            "use a --work-dir on a local filesystem such as ext4, xfs or tmpfs"
        )
    stdout = bounded_output(run.stdout_path)
    if not probes:
        answers = [ProbeAnswer("command", exit_code if exit_code is not None else -1, stdout)]
    return RunResult(
        answers=answers,
        exit_code=exit_code,
        stdout=stdout,
        stderr=bounded_output(run.stderr_path),
        trace=run.summary(),
        seconds=time.monotonic() - started,
    )


def _probe(
    run: _Run, process: subprocess.Popen[bytes], probes: ServiceProbes, deadline: float
) -> list[ProbeAnswer]:
    answers = []
    for port in probes.ports:
        wait_for_port(port, deadline, lambda: process.poll() is None)
    answers += [ProbeAnswer(str(probe), 0, b"") for probe in probes.tcp]
    answers += [send_http_probe(probe, deadline) for probe in probes.http]
    answers += [_exec(run, probe, deadline) for probe in probes.exec]
    answers += [_host(run, probe, deadline) for probe in probes.host]
    if probes.duration:
        time.sleep(min(probes.duration, max(deadline - time.monotonic(), 0)))
    if process.poll() is not None:
        raise ContainerRunError("the container exited while it was being probed")
    return answers


def _exec(run: _Run, probe: ExecProbe, deadline: float) -> ProbeAnswer:
    command = run.traced(run.runc("exec", run.id, *probe.argv))
    return _command_answer(run, str(probe), command, deadline)


def _host(run: _Run, probe: HostProbe, deadline: float) -> ProbeAnswer:
    return _command_answer(run, str(probe), ["sh", "-c", probe.command], deadline)


def _command_answer(run: _Run, probe: str, command: list[str], deadline: float) -> ProbeAnswer:
    """Run a probe's command with its output in files, and return its exit code and stdout.

    The output goes to files, not pipes, so that a command printing without end costs disk
    space up to the timeout but never memory, and :func:`bounded_output` caps what is kept.
    """
    stdout_path, stderr_path = run.probe_output()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            returncode = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=max(deadline - time.monotonic(), 1.0),
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise ContainerRunError(f"{probe} did not finish within the timeout") from exc
    if returncode != 0:
        log.debug("%s exited with %d: %s", probe, returncode, _last_line(stderr_path))
    return ProbeAnswer(probe, returncode, bounded_output(stdout_path))


def _last_line(path: Path) -> str:
    with open(path, "rb") as stream:
        stream.seek(max(os.fstat(stream.fileno()).st_size - 4096, 0))
        lines = stream.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


def _finish(
    run: _Run,
    process: subprocess.Popen[bytes],
    probes: ServiceProbes,
    deadline: float,
    stop_signal: str,
) -> int | None:
    """Let a job run to its end, or stop a service the way `docker stop` does."""
    if not probes:
        try:
            return process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired as exc:
            raise ContainerRunError(
                "the container did not exit within the timeout; "
                "raise --timeout or check its command"
            ) from exc
    _quiet(run.runc("kill", run.id, stop_signal.removeprefix("SIG")))
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _quiet(run.runc("kill", run.id, "KILL"))
        process.wait(timeout=10)
    return None


def _force_stop(run: _Run, process: subprocess.Popen[bytes]) -> None:
    """Make sure no container or tracer outlives the run, whatever happened."""
    if process.poll() is None:
        _quiet(run.runc("kill", run.id, "KILL"))
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _quiet(run.runc("delete", "--force", run.id))


def _quiet(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        log.debug("%s: %s", " ".join(command), result.stderr.decode(errors="replace").strip())
