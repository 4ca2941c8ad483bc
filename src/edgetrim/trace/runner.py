"""Run a bundle with runc, optionally under ``strace -f``, and collect the probe results."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
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
# The container's stdout and stderr and those of exec and host probes go to files in the work
# folder. A process that writes more than this to one of them is stopped and its run fails.
# The limit is far above MAX_OUTPUT_BYTES, because outputs larger than that are still
# compared, by their sha256.
MAX_OUTPUT_FILE_BYTES = 1 << 30
OUTPUT_CHECK_SECONDS = 0.1


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
        # No dot in the stem: with_suffix would replace ".probe-N" and give the container's
        # own output files, which the running service keeps writing to.
        stem = self.bundle.parent / f"{self.id}-probe-{self._probe_outputs}"
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
    with (
        open(run.stdout_path, "wb") as out,
        open(run.stderr_path, "wb") as err,
        _watchdog(run),
    ):
        process = subprocess.Popen(
            command, cwd=bundle, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            answers = _probe(run, process, probes, deadline) if probes else []
            exit_code = _finish(run, process, probes, deadline, stop_signal)
        except ContainerRunError as exc:
            raise ContainerRunError(f"{exc}{run.stderr_tail()}") from exc
        finally:
            finish_cleanup(lambda: _force_stop(run, process))
    if overlay is not None and run.mount_failed():
        raise ContainerRunError(
            f"could not mount the overlay root filesystem of the run{run.stderr_tail()}; "
            "use a --work-dir on a local filesystem such as ext4, xfs or tmpfs"
        )
    stdout = bounded_output(run.stdout_path)
    if not probes:
        status = exit_code if exit_code is not None else -1
        detail = _last_line(run.stderr_path) if status != 0 else ""
        answers = [ProbeAnswer("command", status, stdout, detail)]
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
    return _command_answer(run, str(probe), ["sh", "-c", probe.command], deadline, group=True)


def _command_answer(
    run: _Run, probe: str, command: list[str], deadline: float, *, group: bool = False
) -> ProbeAnswer:
    """Run a probe's command with its output in files, and return its exit code and stdout.

    The output goes to files, not pipes, so that a command printing without end costs no
    memory, and :func:`bounded_output` caps what is kept. A command that writes more than
    MAX_OUTPUT_FILE_BYTES fails the probe. With ``group``, the command gets a process group of
    its own, which is killed when the command ends, so no process it started outlives it.
    A process that leaves the group (with setsid) escapes that.
    """
    stdout_path, stderr_path = run.probe_output()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=group
        )
        try:
            returncode = _wait_bounded(
                process, max(deadline, time.monotonic() + 1.0), probe, (stdout_path, stderr_path)
            )
        finally:
            if group:
                _kill_group(process.pid)
            if process.poll() is None:
                process.kill()
                process.wait()
    detail = _last_line(stderr_path) if returncode != 0 else ""
    if returncode != 0:
        log.debug("%s exited with %d: %s", probe, returncode, detail)
    return ProbeAnswer(probe, returncode, bounded_output(stdout_path), detail)


def _wait_bounded(
    process: subprocess.Popen[bytes],
    deadline: float,
    label: str,
    outputs: tuple[Path, ...],
    *,
    hint: str = "raise --timeout or fix the probe",
) -> int:
    """Wait for ``process`` to exit before ``deadline`` while its ``outputs`` stay small.

    Raises ContainerRunError when the deadline passes or when one of the output files grows
    beyond MAX_OUTPUT_FILE_BYTES. Without that limit, a command that prints without end would
    fill the work folder's filesystem (memory, for a work folder on tmpfs) until the timeout.
    The sizes are checked every OUTPUT_CHECK_SECONDS, so a fast writer passes the limit by
    what it writes in that time.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ContainerRunError(f"{label} timed out before it exited; {hint}")
        try:
            return process.wait(timeout=min(OUTPUT_CHECK_SECONDS, remaining))
        except subprocess.TimeoutExpired:
            pass
        for path in outputs:
            size = os.stat(path).st_size
            if size > MAX_OUTPUT_FILE_BYTES:
                raise ContainerRunError(
                    f"{label} wrote more than {MAX_OUTPUT_FILE_BYTES >> 20} MiB to "
                    f"{'stderr' if path.suffix == '.err' else 'stdout'}, so it was stopped; "
                    "check the command, whose output should end"
                )


def _kill_group(pgid: int) -> None:
    """Send SIGKILL to every process left in the process group ``pgid``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


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
        # NOTE: only a job's output is bounded while it runs. A service's output during its
        # probes is bounded by --timeout alone.
        return _wait_bounded(
            process,
            max(deadline, time.monotonic() + 0.1),
            "the container",
            (run.stdout_path, run.stderr_path),
            hint="raise --timeout or check its command",
        )
    _quiet(run.runc("kill", run.id, stop_signal.removeprefix("SIG")))
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _quiet(run.runc("kill", run.id, "KILL"))
        process.wait(timeout=10)
    return None


# The watchdog's shell script: wait for end of file on stdin, which comes when edgetrim's
# end of the pipe closes, then run the command in "$@" twice. The second attempt catches a
# container that `runc run` created while the first one ran.
_WATCHDOG_SCRIPT = 'read -r _; "$@"; sleep 1; exec "$@"'


@contextlib.contextmanager
def _watchdog(run: _Run) -> Iterator[None]:
    """Delete the run's container if edgetrim dies before the block ends, even by SIGKILL.

    A shell in a session of its own reads from a pipe whose only write end is
    edgetrim's. When edgetrim exits for any reason, the kernel closes that end, and the shell
    runs `runc delete --force`, which kills the container's processes. `runc run` and strace
    then exit too, because their child is gone. When the block ends normally, the watchdog is
    killed first, because the run has already stopped and deleted its container.
    """
    read_end, write_end = os.pipe()
    try:
        watchdog = subprocess.Popen(
            ["sh", "-c", _WATCHDOG_SCRIPT, "sh", *run.runc("delete", "--force", run.id)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(read_end)
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()
        os.close(write_end)


def finish_cleanup(action: Callable[[], None]) -> None:
    """Run a cleanup ``action``, and run it again if SIGINT or SIGTERM interrupts it.

    The ``edgetrim`` command ignores both signals after the first one, so the second attempt
    runs to its end. The KeyboardInterrupt is raised again afterwards.
    """
    try:
        action()
    except KeyboardInterrupt:
        action()
        raise


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
