"""Probes that never end: a trickling HTTP response, hanging or endless host commands.

Each case runs real processes and a real HTTP server on an ephemeral port of 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetrim.errors import ContainerRunError
from edgetrim.trace import runner
from edgetrim.trace.probes import HostProbe, HttpProbe, send_http_probe


class _TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Send the headers, then one byte every 0.2 s until the client goes away."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickle_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TrickleHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_http_trickle_stops_at_deadline(trickle_port):
    started = time.monotonic()
    with pytest.raises(
        ContainerRunError, match="timed out after 2 s before the response was complete"
    ):
        send_http_probe(HttpProbe(trickle_port, "/"), started + 2.0)
    assert time.monotonic() - started < 5.0


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make this process the reaper of orphans that the probes leave.

    An orphan then stays a child of the test process instead of moving to the machine's
    init, which may kill or reap it on its own, so whether it still runs shows what the
    probe left behind. Zombies that this leaves are reaped at the end.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        reap_orphans()


def reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def running(pid: int) -> bool:
    """Tell whether ``pid`` is a live process; a zombie counts as ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_ended(pid: int) -> bool:
    for _ in range(50):
        if not running(pid):
            return True
        time.sleep(0.1)
    return False


def test_hanging_host_probe_leaves_nothing(tmp_path, subreaper):
    pid_file = tmp_path / "child.pid"
    probe = HostProbe(f"sleep 300 & echo $! > {pid_file}; wait")
    run = runner._Run(tmp_path / "bundle", trace=False)
    started = time.monotonic()
    with pytest.raises(ContainerRunError, match="timed out before it exited"):
        runner._host(run, probe, started + 1.0)
    assert time.monotonic() - started < 5.0
    assert wait_ended(int(pid_file.read_text())), "the probe's child outlived it"


def test_host_probe_background_child_killed(tmp_path, subreaper):
    probe = HostProbe("sleep 300 & echo $!")
    run = runner._Run(tmp_path / "bundle", trace=False)
    answer = runner._host(run, probe, time.monotonic() + 10.0)
    assert answer.status == 0
    assert wait_ended(int(answer.body)), "the probe's background child outlived it"


def test_endless_host_probe_output_capped(tmp_path, monkeypatch):
    limit = 8 << 20
    monkeypatch.setattr(runner, "MAX_OUTPUT_FILE_BYTES", limit)
    run = runner._Run(tmp_path / "bundle", trace=False)
    started = time.monotonic()
    with pytest.raises(ContainerRunError, match="wrote more than 8 MiB to stdout"):
        runner._host(run, HostProbe("yes"), started + 60.0)
    assert time.monotonic() - started < 30.0
    [written] = tmp_path.glob("*-probe-1.out")
    # The size is checked every 0.1 s, and `yes` writes at most some hundred MB in that time.
    assert written.stat().st_size < 1 << 30


def test_probe_output_files_separate(tmp_path):
    run = runner._Run(tmp_path / "bundle", trace=False)
    first = run.probe_output()
    second = run.probe_output()
    container = {run.stdout_path, run.stderr_path}
    assert not container & set(first), "a probe writes to the container's output files"
    assert not container & set(second), "a probe writes to the container's output files"
    assert len({*first, *second}) == 4
