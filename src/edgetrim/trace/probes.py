"""Probes that drive a container run and record what it answered.

A run is compared with another run of the same probes: the original image's answers are the
expected ones for the minimized image. Probe kinds:

- HTTP: wait for a port on 127.0.0.1, send one request, record status and body.
- TCP: wait until a port on 127.0.0.1 accepts a connection.
- exec: run a command inside the running container with ``runc exec``; record exit code and stdout.
- host: run a shell command on the host while the container runs; record exit code and stdout.
  The container shares the host's network namespace, so the command reaches it on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgetrim.errors import ContainerRunError, InvalidOptionError

PROBE_HOST = "127.0.0.1"
# Probe answers are kept in memory and compared whole, so each is capped.
MAX_OUTPUT_BYTES = 16 << 20
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def _parse_port(text: str, option: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidOptionError(f"{option} {whole!r}: the port must be a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class HttpProbe:
    """Wait for a TCP port on 127.0.0.1, then send one request and record status and body."""

    port: int
    path: str = "/"
    method: str = "GET"
    expect_status: int | None = None

    @classmethod
    def parse(cls, text: str) -> HttpProbe:
        """Parse ``PORT[/PATH][,method=METHOD][,status=CODE]`` as given to ``--http-probe``."""
        target, *settings = text.split(",")
        port_text, slash, path = target.partition("/")
        port = _parse_port(port_text, "--http-probe", text)
        method, status = "GET", None
        for setting in settings:
            key, _, value = setting.partition("=")
            if key == "method" and value.upper() in HTTP_METHODS:
                method = value.upper()
            elif key == "status" and value.isdigit() and 100 <= int(value) < 600:
                status = int(value)
            else:
                raise InvalidOptionError(
                    f"--http-probe {text!r}: invalid setting {setting!r}; expected "
                    "PORT[/PATH][,method=GET|POST|...][,status=CODE], e.g. 8080/health,status=200"
                )
        return cls(port, slash + path if slash else "/", method, status)

    def __str__(self) -> str:
        return f"{self.method} http://{PROBE_HOST}:{self.port}{self.path}"


@dataclass(frozen=True)
class TcpProbe:
    """Wait until a TCP port on 127.0.0.1 accepts a connection."""

    port: int

    @classmethod
    def parse(cls, text: str) -> TcpProbe:
        """Parse ``PORT`` as given to ``--tcp-probe``."""
        return cls(_parse_port(text, "--tcp-probe", text))

    def __str__(self) -> str:
        return f"TCP {PROBE_HOST}:{self.port}"


@dataclass(frozen=True)
class ExecProbe:
    """A command run inside the running container, as ``docker exec`` runs one."""

    argv: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> ExecProbe:
        """Split ``--exec-probe`` text into argv with shell quoting rules."""
        argv = tuple(_split(text, "--exec-probe"))
        return cls(argv)

    def __str__(self) -> str:
        return f"exec {shlex.join(self.argv)}"


@dataclass(frozen=True)
class HostProbe:
    """A shell command run on the host while the container runs."""

    command: str

    @classmethod
    def parse(cls, text: str) -> HostProbe:
        """Check that ``--probe-cmd`` text is a non-empty shell command."""
        _split(text, "--probe-cmd")
        return cls(text)

    def __str__(self) -> str:
        return f"host command {self.command!r}"


def _split(text: str, option: str) -> list[str]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise InvalidOptionError(f"{option} {text!r}: invalid quoting ({exc})") from exc
    if not argv:
        raise InvalidOptionError(f"{option}: the command is empty")
    return argv


@dataclass(frozen=True)
class ProbeAnswer:
    """The result of one probe: a status (HTTP status, exit code, 0 for an open port) and output."""

    probe: str
    status: int
    body: bytes
    # The last line of stderr of a command that exited non-zero, for messages. Not compared.
    detail: str = field(default="", compare=False)

    @property
    def status_name(self) -> str:
        kind = self.probe.split(" ", 1)[0]
        return {"TCP": "open"}.get(kind, "status" if kind in HTTP_METHODS else "exit code")

    def describe(self) -> str:
        if self.status_name == "open":
            return f"{self.probe}: accepted a connection"
        return f"{self.probe}: {self.status_name} {self.status}, {len(self.body)} bytes"


def bounded_output(path: Path) -> bytes:
    """Return a command's output file, or for a long one its start and the digest of the whole.

    Two outputs compare equal only if their full contents are equal, while memory stays
    bounded by MAX_OUTPUT_BYTES.
    """
    with open(path, "rb") as stream:
        head = stream.read(MAX_OUTPUT_BYTES)
        if not stream.read(1):
            return head
        digest = hashlib.sha256(head)
        stream.seek(len(head))
        size = len(head)
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return head + f"\n[output continues: {size} bytes in all, sha256 {digest.hexdigest()}]".encode()


def port_in_use(port: int) -> bool:
    """Tell whether something already accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((PROBE_HOST, port)) == 0


def wait_for_port(port: int, deadline: float, still_running: Callable[[], bool]) -> None:
    """Poll until 127.0.0.1:port accepts a connection, the process exits, or the deadline passes."""
    while time.monotonic() < deadline:
        if port_in_use(port):
            return
        if not still_running():
            raise ContainerRunError(
                f"the container exited before it listened on port {port}; "
                "check the probe port and the image's command"
            )
        time.sleep(0.1)
    raise ContainerRunError(
        f"nothing listened on {PROBE_HOST}:{port} before the timeout; "
        "check the probe port or raise --timeout"
    )


def send_http_probe(probe: HttpProbe, deadline: float) -> ProbeAnswer:
    """Send the probe's request and return status and body, all before ``deadline``.

    The socket timeout bounds each read only, so a server that sends a byte now and then
    would keep a plain read going for hours. A timer shuts the socket down at the deadline,
    which ends any read in progress.
    """
    timeout = max(deadline - time.monotonic(), 1.0)
    connection = http.client.HTTPConnection(PROBE_HOST, probe.port, timeout=timeout)
    expired = threading.Event()
    sockets: list[socket.socket] = []

    def shut_down() -> None:
        expired.set()
        # The connection drops its reference once the response takes the socket over.
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, shut_down)
    timer.daemon = True
    timer.start()
    try:
        connection.connect()
        sockets.append(connection.sock)
        if expired.is_set():
            raise TimeoutError("timed out")
        connection.request(probe.method, probe.path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read(MAX_OUTPUT_BYTES + 1)
        if expired.is_set():
            raise TimeoutError("timed out")
        if len(body) > MAX_OUTPUT_BYTES:
            raise ContainerRunError(
                f"{probe}: the response is larger than {MAX_OUTPUT_BYTES} bytes or does not "
                "end; probe a smaller resource"
            )
        answer = ProbeAnswer(str(probe), response.status, body)
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise ContainerRunError(
                f"{probe}: timed out after {timeout:.0f} s before the response was complete; "
                "raise --timeout or probe a resource that responds faster"
            ) from exc
        raise ContainerRunError(f"{probe} failed: {exc}") from exc
    finally:
        timer.cancel()
        connection.close()
    return answer
