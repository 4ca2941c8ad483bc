"""Run the fleet's images on the Docker engine and check each against its `expect` in fleet.toml.

Usage (as root, with the engine from scripts/start-docker.sh running and bench/fleet/build.sh done):
    python3 bench/fleet/check_originals.py [--tag TAG] [NAME ...]

Each image runs as edgetrim-fleet/NAME:TAG (default tag `latest`) with --network=host, the way
`edgetrim minimize` probes it: a service is started detached, each HTTP probe waits for its port
on 127.0.0.1 and sends one GET, then the container is removed. A job runs to completion and its
exit code and stdout are checked. Every container is removed afterwards, also on a timeout or an
error. Exit status: 0 when every image passed, 1 when one failed a check, 2 on invalid input.
`minimize_fleet.py` runs the same checks on minimized images (tag `min`).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

FLEET_DIR = Path(__file__).resolve().parent
FLEET_FILE = FLEET_DIR / "fleet.toml"
REPOSITORY = "edgetrim-fleet"
DEFAULT_TIMEOUT = 60.0
STDERR_TAIL_LINES = 15


@dataclass(frozen=True)
class HttpExpectation:
    """The response expected for one HTTP probe: status, and an exact body or substrings of it."""

    probe: str
    status: int
    body: str | None = None
    contains: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandExpectation:
    """The result expected from a job: exit code, and an exact stdout or substrings of it."""

    exit_code: int = 0
    stdout: str | None = None
    stdout_contains: tuple[str, ...] = ()


@dataclass(frozen=True)
class FleetImage:
    """One entry of fleet.toml: the probes for `edgetrim minimize` and their expected results."""

    name: str
    http_probes: tuple[str, ...]
    timeout: float
    http_expect: tuple[HttpExpectation, ...] = ()
    command_expect: CommandExpectation | None = None
    tcp_port: int | None = None

    @property
    def is_service(self) -> bool:
        return bool(self.http_probes)

    def minimize_args(self) -> list[str]:
        """Return the probe and timeout options to pass to `edgetrim minimize` for this image."""
        args = [arg for probe in self.http_probes for arg in ("--http-probe", probe)]
        if not self.is_service:
            args.append("--cmd-probe")
        return [*args, "--timeout", f"{self.timeout:g}"]

    def reference(self, tag: str) -> str:
        return f"{REPOSITORY}/{self.name}:{tag}"


@dataclass
class CheckResult:
    """The outcome of one run: the failed checks (empty when it passed) and the stderr."""

    name: str
    reference: str
    failures: list[str] = field(default_factory=list)
    stderr: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


class FleetFileError(Exception):
    """fleet.toml is missing a required key or has a value of the wrong type."""


def load_fleet(path: Path = FLEET_FILE) -> list[FleetImage]:
    """Read fleet.toml into FleetImage entries, checking that each probe has an expectation."""
    with open(path, "rb") as stream:
        data = tomllib.load(stream)
    images = [_parse_image(entry, path) for entry in data.get("image", [])]
    names = [image.name for image in images]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise FleetFileError(f"{path}: image names appear more than once: {', '.join(duplicates)}")
    return images


def _parse_image(entry: dict, path: Path) -> FleetImage:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise FleetFileError(f"{path}: an [[image]] entry has no name")
    where = f"{path}: image {name!r}"
    http_probes = tuple(entry.get("http_probes", ()))
    cmd_probe = bool(entry.get("cmd_probe", False))
    if bool(http_probes) == cmd_probe:
        raise FleetFileError(
            f"{where}: set either http_probes or cmd_probe = true, not both or neither"
        )
    expectations = entry.get("expect", [])
    if not expectations:
        raise FleetFileError(f"{where}: has no [[image.expect]] entry")

    tcp_port = entry.get("tcp_port")
    image = FleetImage(
        name=name,
        http_probes=http_probes,
        timeout=float(entry.get("timeout", DEFAULT_TIMEOUT)),
        tcp_port=int(tcp_port) if tcp_port is not None else None,
    )
    if cmd_probe:
        return replace(image, command_expect=_parse_job_expectation(expectations, where))
    return replace(image, http_expect=_parse_http_expectations(expectations, http_probes, where))


def _parse_job_expectation(expectations: list[dict], where: str) -> CommandExpectation:
    if len(expectations) != 1:
        raise FleetFileError(f"{where}: a job needs exactly one [[image.expect]] entry")
    expect = expectations[0]
    return CommandExpectation(
        exit_code=int(expect.get("exit_code", 0)),
        stdout=expect.get("stdout"),
        stdout_contains=tuple(expect.get("stdout_contains", ())),
    )


def _parse_http_expectations(
    expectations: list[dict], http_probes: tuple[str, ...], where: str
) -> tuple[HttpExpectation, ...]:
    http = tuple(
        HttpExpectation(
            probe=expect["probe"],
            status=int(expect.get("status", 200)),
            body=expect.get("body"),
            contains=tuple(expect.get("contains", ())),
        )
        for expect in expectations
    )
    unknown = sorted({e.probe for e in http} - set(http_probes))
    missing = sorted(set(http_probes) - {e.probe for e in http})
    if unknown or missing:
        raise FleetFileError(
            f"{where}: every probe in http_probes needs one expect entry; "
            f"without an entry: {missing}, not in http_probes: {unknown}"
        )
    return http


def docker(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI and return its result without raising on a non-zero exit."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def check_image(image: FleetImage, tag: str = "latest") -> CheckResult:
    """Run ``image`` at ``tag`` once, check every expectation, then remove the container.

    The container is removed also after a failure or a timeout.
    """
    reference = image.reference(tag)
    result = CheckResult(image.name, reference)
    container = f"edgetrim-fleet-check-{image.name}-{os.getpid()}"
    started = time.monotonic()
    busy = [port for port in _ports(image) if port_open(port)]
    if busy:
        result.failures.append(f"ports already in use on 127.0.0.1 before the run: {busy}")
        return result
    try:
        if image.is_service:
            _check_service(image, reference, container, result)
        else:
            _check_job(image, reference, container, result)
    finally:
        logs = docker("logs", container, timeout=30)
        if not result.stderr and logs.returncode == 0:
            result.stderr = logs.stderr
        docker("rm", "--force", container, timeout=60)
        result.seconds = time.monotonic() - started
    return result


def _ports(image: FleetImage) -> list[int]:
    ports = {int(probe.partition("/")[0]) for probe in image.http_probes}
    if image.tcp_port is not None:
        ports.add(image.tcp_port)
    return sorted(ports)


def _check_job(image: FleetImage, reference: str, container: str, result: CheckResult) -> None:
    expect = image.command_expect
    assert expect is not None
    # --pull=never: a missing image is an error here, never a reason to contact a registry.
    try:
        run = docker(
            "run",
            "--pull=never",
            "--network=host",
            "--name",
            container,
            reference,
            timeout=image.timeout,
        )
    except subprocess.TimeoutExpired:
        result.failures.append(f"the job did not exit within {image.timeout:g} s")
        return
    result.stderr = run.stderr
    if run.returncode != expect.exit_code:
        result.failures.append(f"exit code {run.returncode}, expected {expect.exit_code}")
    if expect.stdout is not None and run.stdout != expect.stdout:
        result.failures.append(
            f"stdout differs:\n{_quote(run.stdout)}\nexpected:\n{_quote(expect.stdout)}"
        )
    for text in expect.stdout_contains:
        if text not in run.stdout:
            result.failures.append(f"stdout lacks {text!r}:\n{_quote(run.stdout)}")


def _check_service(image: FleetImage, reference: str, container: str, result: CheckResult) -> None:
    started = docker(
        "run", "--pull=never", "--detach", "--network=host", "--name", container, reference
    )
    if started.returncode != 0:
        result.failures.append(f"docker run failed: {started.stderr.strip()}")
        return
    deadline = time.monotonic() + image.timeout
    for expect in image.http_expect:
        port, _, path = expect.probe.partition("/")
        failure = _wait_for_port(int(port), container, deadline)
        if failure:
            result.failures.append(f"GET {expect.probe}: {failure}")
            return
        try:
            status, body = _http_get(int(port), "/" + path, deadline)
        except (OSError, http.client.HTTPException) as exc:
            result.failures.append(f"GET {expect.probe}: request failed: {exc}")
            continue
        result.failures += _compare_http(expect, status, body)


def _wait_for_port(port: int, container: str, deadline: float) -> str | None:
    """Poll until the port accepts connections; return why it did not, or None."""
    while time.monotonic() < deadline:
        if port_open(port):
            return None
        state = docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", container)
        running, _, code = state.stdout.strip().partition(" ")
        if running != "true":
            return f"the container exited with code {code} before it listened on port {port}"
        time.sleep(0.2)
    return f"nothing listened on 127.0.0.1:{port} within the timeout"


def _http_get(port: int, path: str, deadline: float) -> tuple[int, str]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=max(deadline - time.monotonic(), 1.0)
    )
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def _compare_http(expect: HttpExpectation, status: int, body: str) -> list[str]:
    failures = []
    if status != expect.status:
        failures.append(f"GET {expect.probe}: status {status}, expected {expect.status}")
    if expect.body is not None and body != expect.body:
        failures.append(
            f"GET {expect.probe}: body differs:\n{_quote(body)}\nexpected:\n{_quote(expect.body)}"
        )
    for text in expect.contains:
        if text not in body:
            failures.append(f"GET {expect.probe}: body lacks {text!r}:\n{_quote(body)}")
    return failures


def _quote(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines()) or "    | (empty)"


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a container's stderr, indented for a report."""
    last = text.strip().splitlines()[-lines:]
    return "\n".join(f"    ! {line}" for line in last)


def select(images: list[FleetImage], names: list[str]) -> list[FleetImage]:
    """Return the images named in ``names`` in that order, or all images when it is empty."""
    if not names:
        return images
    by_name = {image.name: image for image in images}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise FleetFileError(
            f"not in {FLEET_FILE.name}: {', '.join(unknown)}; known: {', '.join(by_name)}"
        )
    return [by_name[name] for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="images to check (default: all)")
    parser.add_argument(
        "--tag", default="latest", help="tag of edgetrim-fleet/NAME to run (default: latest)"
    )
    options = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", "unix:///run/edgetrim-docker/docker.sock")
    try:
        images = select(load_fleet(), options.names)
    except (FleetFileError, tomllib.TOMLDecodeError, OSError) as exc:
        print(f"check_originals.py: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for image in images:
        result = check_image(image, options.tag)
        verdict = "PASS" if result.passed else "FAIL"
        print(f"{verdict} {result.reference} ({result.seconds:.1f} s)")
        if not result.passed:
            failed += 1
            for failure in result.failures:
                print(f"  {failure}")
            if result.stderr.strip():
                print(f"  container stderr, last lines:\n{stderr_tail(result.stderr)}")
    print(f"{len(images) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
