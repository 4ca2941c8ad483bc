"""Read images from and write them to a Docker engine, through ``docker save`` and ``docker load``.

The engine is the one that DOCKER_HOST names (the docker SDK's ``docker.from_env()``). Both
directions go through a docker archive in a temporary file, so memory does not grow with the
image size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import requests

from edgetrim.errors import DockerEngineError, ImageNotFoundError
from edgetrim.image.digest import Digest
from edgetrim.image.model import Image, Platform
from edgetrim.transports.docker_archive import read_docker_archive, write_docker_archive

logger = logging.getLogger(__name__)

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_CHUNK_SIZE = 1 << 20


@contextlib.contextmanager
def read_docker_daemon(name: str, *, platform: Platform | None = None) -> Iterator[Image]:
    """Export the image ``name`` (``name:tag`` or ``sha256:<id>``) from the engine and open it.

    Raises ImageNotFoundError if the engine has no such image, and DockerEngineError if the
    engine does not respond or fails the export.
    """
    display = f"docker-daemon:{name}"
    with tempfile.TemporaryDirectory(prefix="edgetrim-daemon-") as temp:
        archive = Path(temp) / "image.tar"
        with contextlib.closing(_connect()) as client:
            _save(client, name, archive, display)
        with read_docker_archive(archive, platform=platform, display=display) as image:
            yield image


def write_docker_daemon(image: Image, name: str) -> Digest:
    """Load ``image`` into the engine under the tag ``name`` (``name:tag``).

    Returns the config digest, which is the image ID the engine reports. Raises
    DockerEngineError, in one line, if the engine does not respond or rejects the image.
    """
    display = f"docker-daemon:{name}"
    with tempfile.TemporaryDirectory(prefix="edgetrim-daemon-") as temp:
        archive = Path(temp) / "image.tar"
        write_docker_archive(image, archive, repo_tags=[name])
        with contextlib.closing(_connect()) as client, open(archive, "rb") as data:
            _load(client, data, display)
    return image.config.digest


def _connect() -> docker.DockerClient:
    host = _host()
    socket_path = host.removeprefix("unix://")
    # NOTE: in docker 7.1.0, UnixHTTPConnection.connect does not close its socket when the
    # connect fails (a ResourceWarning). A missing socket file, the usual case of a stopped
    # engine, is therefore reported here without the SDK; a refused connect still leaks.
    if host.startswith("unix://") and not os.path.exists(socket_path):
        raise _unreachable(f"{socket_path} does not exist")
    try:
        return docker.from_env()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _unreachable(exc) from None


def _save(client: docker.DockerClient, name: str, archive: Path, display: str) -> None:
    logger.info("exporting %s from the Docker engine", display)
    try:
        # The export returns a server error (500), not 404, for a missing image ID.
        client.api.inspect_image(name)
        with open(archive, "wb") as out:
            for chunk in client.api.get_image(name, chunk_size=_CHUNK_SIZE):
                out.write(chunk)
    except docker.errors.NotFound:
        raise ImageNotFoundError(
            f"{display}: the Docker engine at {_host()} has no such image; "
            "pull, build or load it first"
        ) from None
    except docker.errors.APIError as exc:
        raise DockerEngineError(
            f"{display}: the Docker engine failed to export the image: {_one_line(exc)}"
        ) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _unreachable(exc) from None


def _load(client: docker.DockerClient, data: object, display: str) -> None:
    logger.info("loading %s into the Docker engine", display)
    try:
        for message in client.api.load_image(data):
            error = message.get("error") if isinstance(message, dict) else None
            if error:
                raise DockerEngineError(
                    f"{display}: the Docker engine rejected the image: {_one_line(error)}"
                )
    except docker.errors.APIError as exc:
        raise DockerEngineError(
            f"{display}: the Docker engine rejected the image: {_one_line(exc)}"
        ) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise _unreachable(exc) from None


def _unreachable(reason: object) -> DockerEngineError:
    return DockerEngineError(
        f"no Docker engine responds at {_host()} ({_one_line(reason)}); start Docker or set "
        "DOCKER_HOST to the address of a running engine"
    )


def _host() -> str:
    return os.environ.get("DOCKER_HOST") or _DEFAULT_HOST


def _one_line(value: object) -> str:
    explanation = getattr(value, "explanation", None)
    return " ".join(str(explanation or value).split())
