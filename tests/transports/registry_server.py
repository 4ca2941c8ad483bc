"""Registries for tests: Debian's docker-registry on 127.0.0.1, a token server and a fault proxy.

Everything listens on 127.0.0.1 at a free port, keeps its files in a folder the test owns and
stops when its context manager exits. :class:`Registry` runs the reference registry
(distribution 2.8, /usr/bin/docker-registry) with a YAML config written here, in one of three
setups: plain HTTP, TLS with a CA made by openssl plus htpasswd (bcrypt) auth, or Bearer token
auth against :class:`TokenServer`, whose JWTs openssl signs. :class:`FaultProxy` forwards to a
registry and returns errors for chosen requests, to test retries and fallbacks.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGISTRY_BINARY = "/usr/bin/docker-registry"
USER = "edgetrim"
PASSWORD = "s3cret-test-password"
SERVICE = "edgetrim-test-registry"
ISSUER = "edgetrim-test-token-issuer"
START_TIMEOUT = 20.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def openssl(*args: str, data: bytes | None = None) -> bytes:
    result = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout


@dataclass
class CertificateAuthority:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with openssl."""

    folder: Path
    ca_cert: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ca_key = self.folder / "ca.key"
        self.ca_cert = self.folder / "ca.crt"
        self.server_key = self.folder / "server.key"
        self.server_cert = self.folder / "server.crt"
        request = self.folder / "server.csr"
        extensions = self.folder / "server.ext"
        openssl("genrsa", "-out", str(ca_key), "2048")
        openssl(
            "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "2",
            "-subj", "/CN=edgetrim test CA", "-out", str(self.ca_cert),
        )  # fmt: skip
        openssl("genrsa", "-out", str(self.server_key), "2048")
        openssl(
            "req", "-new", "-key", str(self.server_key), "-subj", "/CN=127.0.0.1",
            "-out", str(request),
        )  # fmt: skip
        extensions.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        )
        openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extensions),
            "-out", str(self.server_cert),
        )  # fmt: skip


def htpasswd_line(user: str, password: str) -> str:
    bcrypt = pytest.importorskip("bcrypt", reason="the test extra installs bcrypt")
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"


def write_docker_config(folder: Path, registry: str, user: str, password: str) -> Path:
    """Write a Docker client config.json as ``docker login`` does, and return its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return folder


class Registry:
    """docker-registry on 127.0.0.1 with its storage in ``folder``.

    ``tls`` serves HTTPS with a certificate from a CertificateAuthority. ``htpasswd``
    requires USER and PASSWORD. ``token_realm`` switches to Bearer token auth at that realm.
    ``foreign_urls`` is a regex of the foreign-layer URLs that manifests may name; the registry
    rejects all of them by default.
    """

    def __init__(
        self,
        folder: Path,
        *,
        tls: CertificateAuthority | None = None,
        htpasswd: bool = False,
        token_realm: str | None = None,
        token_cert: Path | None = None,
        foreign_urls: str | None = None,
    ):
        if shutil.which(REGISTRY_BINARY) is None:
            pytest.skip(f"{REGISTRY_BINARY} is missing; install the Debian package docker-registry")
        self.folder = folder
        self.tls = tls
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        config: dict = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(folder / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        if foreign_urls is not None:
            config["validation"] = {"manifests": {"urls": {"allow": [foreign_urls]}}}
        if tls is not None:
            config["http"]["tls"] = {
                "certificate": str(tls.server_cert),
                "key": str(tls.server_key),
            }
        if htpasswd:
            (folder / "htpasswd").write_text(htpasswd_line(USER, PASSWORD))
            config["auth"] = {"htpasswd": {"realm": SERVICE, "path": str(folder / "htpasswd")}}
        if token_realm is not None:
            config["auth"] = {
                "token": {
                    "realm": token_realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(token_cert),
                }
            }
        # YAML is a superset of JSON, so the config is written as JSON.
        (folder / "config.yml").write_text(json.dumps(config))
        self._log = open(folder / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(folder / "config.yml")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()
                log = (self.folder / "registry.log").read_text(errors="replace")
                raise AssertionError(f"docker-registry exited at start:\n{log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"docker-registry did not listen on {self.host} in {START_TIMEOUT} s")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._log.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- Bearer tokens -------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint for distribution's token auth, signing RS256 JWTs with openssl.

    Requests with USER and PASSWORD get every action they ask for; anonymous ones get only
    ``pull`` when ``anonymous_pull`` is true. ``requests`` records (user or None, scopes).
    """

    def __init__(self, folder: Path, *, anonymous_pull: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        self.key = folder / "token.key"
        self.cert = folder / "token.crt"
        openssl("genrsa", "-out", str(self.key), "2048")
        openssl(
            "req", "-x509", "-new", "-key", str(self.key), "-sha256", "-days", "2",
            "-subj", "/CN=edgetrim test token signer", "-out", str(self.cert),
        )  # fmt: skip
        der = openssl("x509", "-in", str(self.cert), "-outform", "DER")
        self._x5c = base64.b64encode(der).decode()
        self.anonymous_pull = anonymous_pull
        self.requests: list[tuple[str | None, list[str]]] = []
        self.issued: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = _basic_user(self.headers.get("Authorization", ""))
                if user == "":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scopes = query.get("scope", [])
                server.requests.append((user, scopes))
                body = json.dumps({"token": server.sign(user, scopes), "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def sign(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = _split_scope(scope)
            granted = (
                actions if user else [a for a in actions if a == "pull" and self.anonymous_pull]
            )
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = openssl("dgst", "-sha256", "-sign", str(self.key), data=signing_input.encode())
        token = f"{signing_input}.{_b64url(signature)}"
        self.issued.append(token)
        return token

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _split_scope(scope: str) -> tuple[str, str, list[str]]:
    # repository:name:actions, where the name may itself contain a colon (host:port/...).
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return kind, name, [a for a in actions.split(",") if a]


def _basic_user(header: str) -> str | None:
    """Return the user of valid Basic credentials, None for none, "" for wrong ones."""
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user if (user, password) == (USER, PASSWORD) else ""


# -- faults --------------------------------------------------------------------------------------


@dataclass
class Fault:
    """A fault for up to ``times`` requests that match ``method`` and ``path`` (a regex).

    ``status`` sends that status with ``headers`` and ``body`` instead of forwarding.
    ``cut_after`` forwards and then sends only that many body bytes before closing the
    connection.
    """

    method: str
    path: str
    times: int
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    cut_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a plain-HTTP registry, injecting ``faults``.

    ``requests`` records (method, path without query, status sent) for every request.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._take_fault(self.command, path)
                if fault is not None and fault.status is not None:
                    proxy.requests.append((self.command, path, fault.status))
                    self.send_response(fault.status)
                    for key, value in fault.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(fault.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(fault.body)
                    return
                connection = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                proxy.requests.append((self.command, path, answer.status))
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                if fault is not None and fault.cut_after is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: fault.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def count(self, method: str, path_pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.search(path_pattern, p))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(*servers: Registry | TokenServer | FaultProxy) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            server.stop()
