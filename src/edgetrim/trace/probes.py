"""Probes that drive a container run and record what it answered.

A run is compared with another run of the same probes: the original image's answers are the
expected ones for the minimized image.
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass

from edgetrim.errors import ContainerRunError, InvalidOptionError

PROBE_HOST = "127.0.0.1"


@dataclass(frozen=True)
class HttpProbe:
    """Wait for a TCP port on 127.0.0.1, then send one GET and record status and body."""

    port: int
    path: str = "/"

    @classmethod
    def parse(cls, text: str) -> HttpProbe:
        """Parse ``PORT[/PATH]`` as given to ``--http-probe``."""
        port_text, slash, path = text.partition("/")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidOptionError(
                f"--http-probe {text!r}: expected PORT[/PATH] with a port from 1 to 65535, "
                "e.g. 8080/health"
            )
        return cls(int(port_text), slash + path if slash else "/")

    def __str__(self) -> str:
        return f"GET http://{PROBE_HOST}:{self.port}{self.path}"


@dataclass(frozen=True)
class ProbeAnswer:
    """What one probe observed: HTTP status and body, or a command's exit code and stdout."""

    probe: str
    status: int
    body: bytes

    def describe(self) -> str:
        kind = "exit code" if self.probe == "command" else "status"
        return f"{self.probe}: {kind} {self.status}, {len(self.body)} bytes"


def port_in_use(port: int) -> bool:
    """Tell whether something already accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((PROBE_HOST, port)) == 0


def wait_for_port(port: int, deadline: float, still_running) -> None:
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
    """Send the probe's GET and return status and body."""
    timeout = max(deadline - time.monotonic(), 1.0)
    connection = http.client.HTTPConnection(PROBE_HOST, probe.port, timeout=timeout)
    try:
        connection.request("GET", probe.path, headers={"Connection": "close"})
        response = connection.getresponse()
        return ProbeAnswer(str(probe), response.status, response.read())
    except (OSError, http.client.HTTPException) as exc:
        raise ContainerRunError(f"{probe} failed: {exc}") from exc
    finally:
        connection.close()
