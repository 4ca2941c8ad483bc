"""Registry credentials from Docker's config.json, and parsing of WWW-Authenticate challenges.

Credentials come from the ``auths`` map of ``config.json`` in ``$DOCKER_CONFIG``, or in
``~/.docker`` when that variable is unset, which is where ``docker login`` stores them: an
``auth`` field with base64 of ``user:password``, or ``username`` and ``password`` fields.
Passwords are kept out of ``repr`` so that they cannot reach a log or a traceback by accident.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgetrim.errors import RegistryAuthError
from edgetrim.transports.reference import DOCKER_HUB

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# docker login stores Docker Hub's credentials under its old index address.
_HUB_KEYS = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
# One auth-param of RFC 7235: key=token or key="quoted string" with backslash escapes.
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme (``basic`` or ``bearer``) and params."""

    scheme: str
    params: dict[str, str]


def docker_config_dir() -> Path:
    """Return the folder of Docker's client config: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    configured = os.environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"


def load_credentials(registry: str, *, config_dir: Path | None = None) -> Credentials | None:
    """Return the credentials that ``docker login`` stored for ``registry``, or None.

    ``registry`` is the host as written in the image reference (``docker.io`` for Docker
    Hub). Raises RegistryAuthError if config.json exists but is malformed.
    """
    path = (config_dir or docker_config_dir()) / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryAuthError(
            f"{path}: cannot read ({exc.strerror}); check its permissions"
        ) from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryAuthError(f"{path}: not valid JSON ({exc}); fix or remove the file") from None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        auths = {}
    for key, entry in auths.items():
        if isinstance(entry, dict) and _registry_of(key) == _registry_of(registry):
            credentials = _entry_credentials(entry, path, key)
            if credentials is not None:
                return credentials
    if isinstance(config, dict) and (config.get("credsStore") or config.get("credHelpers")):
        # NOTE: credential helpers (docker-credential-*) are not run; only stored auths work.
        logger.warning(
            "%s names a credential helper, which edgetrim does not run; no credentials "
            "for %s were found in its auths",
            path,
            registry,
        )
    return None


def _entry_credentials(entry: dict, path: Path, key: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(
                f"{path}: the auth field for {key} is not base64 of user:password; "
                "run docker login again"
            ) from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise RegistryAuthError(
                f"{path}: the auth field for {key} has no ':' between user and password; "
                "run docker login again"
            )
        return Credentials(username, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


def _registry_of(key: str) -> str:
    """Reduce an auths key (``https://host/v1/``, ``host``, ``http://host``) to its host."""
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_KEYS else host


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header into its challenges, in order.

    Unknown schemes are kept, so the caller can name them in an error.
    """
    challenges: list[Challenge] = []
    rest = header.strip()
    while rest:
        scheme, _, rest = rest.partition(" ")
        scheme = scheme.strip(", ")
        params: dict[str, str] = {}
        while True:
            match = _PARAM_RE.match(rest)
            if not match:
                break
            quoted, plain = match.group(2), match.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
            params[match.group(1).lower()] = value
            rest = rest[match.end() :]
        if scheme:
            challenges.append(Challenge(scheme.lower(), params))
    return challenges


def basic_header(credentials: Credentials) -> str:
    """Return the value of an ``Authorization: Basic`` header."""
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
