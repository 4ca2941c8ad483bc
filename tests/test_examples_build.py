"""Build the bundled examples with the real engine and record how the originals behave.

Minimize must keep this behaviour: the batch job prints examples/batch-job/expected-output.txt,
and the HTTP service answers GET / with GREETING and GET /health with fixed JSON.
"""

from __future__ import annotations

import json
import math
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BATCH_JOB_TAG = "edgetrim-example/batch-job:latest"
PYTHON_HTTP_TAG = "edgetrim-example/python-http:latest"
HTTP_ADDRESS = ("127.0.0.1", 8080)
GREETING = "Hello from the edgetrim python-http example.\n"
STARTUP_TIMEOUT = 60.0  # seconds for the service to accept connections


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against the engine that the docker_host fixture exported."""
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def summarize_readings(data: bytes, path: str) -> str:
    """Compute the batch job's output for a readings file, with the same float arithmetic as its C.

    The C program sums in row order and prints with %.2f, and Python's float formatting rounds the
    same binary value the same way, so the two texts match byte for byte.
    """
    lines = data.decode().splitlines()[1:]
    values: dict[str, list[float]] = {}
    for line in lines:
        _time, sensor, celsius = line.split(",")
        values.setdefault(sensor, []).append(float(celsius))

    out = [f"input: {path}", f"rows: {len(lines)}", f"crc32: {zlib.crc32(data):08x}"]
    out.append(f"{'sensor':<12} {'n':>5} {'min':>8} {'max':>8} {'mean':>8} {'stddev':>8}")
    for sensor in sorted(values):
        readings = values[sensor]
        total = 0.0
        for value in readings:
            total += value
        mean = total / len(readings)
        squares = 0.0
        for value in readings:
            squares += (value - mean) * (value - mean)
        stddev = math.sqrt(squares / len(readings))
        out.append(
            f"{sensor:<12} {len(readings):>5} {min(readings):8.2f} {max(readings):8.2f}"
            f" {mean:8.2f} {stddev:8.2f}"
        )
    return "\n".join(out) + "\n"


def test_batch_job_expected_output_matches_data() -> None:
    data = (EXAMPLES / "batch-job" / "readings.csv").read_bytes()
    expected = (EXAMPLES / "batch-job" / "expected-output.txt").read_text()

    assert summarize_readings(data, "/usr/share/batch-job/readings.csv") == expected


@pytest.mark.docker
def test_batch_job_prints_summary(build_image) -> None:
    tag = build_image(EXAMPLES / "batch-job", BATCH_JOB_TAG)
    expected = (EXAMPLES / "batch-job" / "expected-output.txt").read_text()

    result = docker("run", "--rm", "--network=host", tag, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert result.stderr == ""


@pytest.mark.docker
def test_batch_job_links_zlib_and_libm(build_image) -> None:
    tag = build_image(EXAMPLES / "batch-job", BATCH_JOB_TAG)

    result = docker(
        "run", "--rm", "--network=host", tag, "readelf", "-d", "/usr/local/bin/batch-job"
    )

    assert "Shared library: [libz.so.1]" in result.stdout
    assert "Shared library: [libm.so.6]" in result.stdout
    assert "Shared library: [libc.so.6]" in result.stdout


@pytest.mark.docker
def test_batch_job_rejects_invalid_row(build_image) -> None:
    tag = build_image(EXAMPLES / "batch-job", BATCH_JOB_TAG)
    script = (
        "printf 'time,sensor,celsius\\nt,boiler,warm\\n' >/tmp/bad.csv && batch-job /tmp/bad.csv"
    )

    result = docker("run", "--rm", "--network=host", tag, "sh", "-c", script, check=False)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "/tmp/bad.csv:2: invalid row" in result.stderr


def port_is_open(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(address) == 0


def http_get(path: str) -> tuple[int, str, str]:
    """Send GET to the example service and return the status, the Content-Type and the body."""
    url = f"http://{HTTP_ADDRESS[0]}:{HTTP_ADDRESS[1]}{path}"
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def wait_for_http(container: str) -> None:
    """Poll until the service accepts connections, or fail with its log if it exits or times out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if port_is_open(HTTP_ADDRESS):
            return
        state = docker("inspect", "-f", "{{.State.Running}}", container, check=False)
        if state.stdout.strip() != "true":
            logs = docker("logs", container, check=False)
            pytest.fail(
                f"container {container} exited before it served:\n{logs.stdout}{logs.stderr}"
            )
        time.sleep(0.2)
    logs = docker("logs", container, check=False)
    pytest.fail(
        f"{container} did not accept connections on port 8080 within "
        f"{STARTUP_TIMEOUT:.0f} s:\n{logs.stdout}{logs.stderr}"
    )


@pytest.fixture
def python_http(build_image):
    """Run the python-http example detached on the host network and remove it afterwards."""
    tag = build_image(EXAMPLES / "python-http", PYTHON_HTTP_TAG)
    if port_is_open(HTTP_ADDRESS):
        pytest.fail("another process already listens on 127.0.0.1:8080; stop it and rerun")

    name = f"edgetrim-test-python-http-{uuid.uuid4().hex[:12]}"
    try:
        docker("run", "-d", "--network=host", "--name", name, tag)
        wait_for_http(name)
        yield name
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.docker
def test_python_http_serves_greeting(python_http: str) -> None:
    status, content_type, body = http_get("/")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert body == GREETING


@pytest.mark.docker
def test_python_http_health_is_stable(python_http: str) -> None:
    first = http_get("/health")
    second = http_get("/health")
    health = json.loads(first[2])

    assert first[0] == 200
    assert first[1] == "application/json"
    assert first == second
    assert health["status"] == "ok"
    assert health["python"].startswith("3.11.")
    assert health["implementation"] == "CPython"
    assert health["flask"].startswith("2.2.")
    assert health["system"] == "Linux"
    assert health["machine"] == platform.machine()


@pytest.mark.docker
def test_python_http_unknown_path_is_404(python_http: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        http_get("/missing")
    raised.value.close()

    assert raised.value.code == 404
