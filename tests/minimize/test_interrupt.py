"""Signals during a traced service run: what stays behind after SIGTERM, repeated, or SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.runtime]

PORT = 8096
SERVICE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends busybox perl \\
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["busybox", "httpd", "-f", "-p", "127.0.0.1:8096", "-h", "/usr/share"]
"""


@pytest.fixture(scope="module")
def service(build_image, base_image, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("interrupt-service")
    (context / "Dockerfile").write_text(SERVICE.format(base=base_image))
    return build_image(context, "edgetrim-test/interrupt-service:latest")


def start_traced_service(service: str, work: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start minimize and return once the service runs under strace with a long probe duration."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "edgetrim", "-v", "minimize", f"docker-daemon:{service}",
                f"oci:{work.parent / 'out'}:min", "--http-probe", f"{PORT}/",
                "--probe-duration", "120", "--work-dir", str(work),
            ],
            cwd=REPO, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 600
    while "under strace" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    wait_until(lambda: port_open(PORT), 60, f"port {PORT} never opened:\n{log.read_text()}")
    # The HTTP probe runs as soon as the port is open, so a second later the run is in its
    # probe duration.
    time.sleep(1)
    return process


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def processes_using(folder: Path) -> list[str]:
    """Return the command lines of running processes that name ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # Zombies ("Z") have exited but wait for a parent to reap them.
        if str(folder) in command and status.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(command)
    return found


def wait_until(condition, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def test_repeated_sigterm_cleans_up(service, runtime_tools, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "log"
    process = start_traced_service(service, work, log)
    # The first signal starts the cleanup, and the others arrive while it runs.
    for _ in range(40):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    assert process.wait(timeout=120) == 130, log.read_text()
    assert list(work.iterdir()) == [], log.read_text()
    assert processes_using(work) == []
    assert not port_open(PORT)
    assert "ignored while cleaning up" in log.read_text()


def test_sigkill_stops_container(service, runtime_tools, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "log"
    process = start_traced_service(service, work, log)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    wait_until(lambda: not processes_using(work), 30, f"left running: {processes_using(work)}")
    wait_until(lambda: not port_open(PORT), 10, f"port {PORT} still open")
