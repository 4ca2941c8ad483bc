"""Which TLS failures the registry client retries: a protocol error is final, an EOF is not."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetrim.errors import RegistryError
from edgetrim.transports import RegistryOptions, open_image
from tests.transports.registry_server import Registry


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("plain-registry")) as registry:
        yield registry


class ClosingServer:
    """A TCP server on 127.0.0.1 that closes every connection at once, counting them.

    A TLS client sees the close during its handshake as an unexpected EOF.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._socket.close()
        self._thread.join(5)


def options(tmp_path: Path) -> RegistryOptions:
    # Delays long enough that a retried request would show in the elapsed time.
    return RegistryOptions(retries=3, backoff=2.0, max_delay=2.0, timeout=10, config_dir=tmp_path)


def test_plain_http_registry_not_retried(plain: Registry, tmp_path: Path) -> None:
    started = time.monotonic()
    with (
        pytest.raises(RegistryError) as caught,
        open_image(f"docker://{plain.host}/app:1", registry=options(tmp_path)),
    ):
        pass
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "WRONG_VERSION_NUMBER" in message
    assert "--insecure" in message
    assert "attempts" not in message
    # Three retries would wait 6 s in all.
    assert elapsed < 3, elapsed


def test_eof_in_handshake_retried(tmp_path: Path) -> None:
    server = ClosingServer()
    try:
        fast = RegistryOptions(retries=2, backoff=0.01, max_delay=0.05, config_dir=tmp_path)
        with (
            pytest.raises(RegistryError) as caught,
            open_image(f"docker://127.0.0.1:{server.port}/app:1", registry=fast),
        ):
            pass
    finally:
        server.close()
    assert server.connections == 3
    assert "after 3 attempts" in str(caught.value)
