"""An HTTP client for one registry's distribution API: TLS, authentication and retries.

It uses httpx rather than urllib. Blob pulls and pushes need streamed bodies in both
directions with timeouts, and a push makes many small requests that reuse connections.
Registries also redirect blob downloads to storage servers, and httpx drops the Authorization
header on a redirect to another host, where urllib's redirect handler keeps it.

TLS is verified against the system's CA store, plus ``RegistryOptions.ca_cert`` (from
``--ca-cert`` or ``EDGETRIM_CA_CERT``) when given. Plain HTTP is used only when
``RegistryOptions.insecure`` is set (``--insecure`` or ``EDGETRIM_INSECURE=1``) and the
registry host is a loopback address (``localhost``, 127.0.0.0/8, ``::1``); then HTTPS is tried
first and HTTP only if the TLS connection fails. For every other host ``insecure`` has no
effect, so credentials and images never cross a network in clear text.

Authentication follows the registry's ``WWW-Authenticate`` challenge: Basic sends the
credentials from Docker's config.json with every request; Bearer exchanges them (or nothing,
for anonymous pulls) at the challenge's realm for a token per repository scope. Requests that
fail with 429, 5xx or a connection error are retried with exponential backoff, at most
``RegistryOptions.retries`` times. A TLS handshake that fails on the certificate or the
protocol is not retried, because every attempt would fail the same way. Request bodies that
are streams are not retried here; the push retries the whole blob instead. Nothing that is
logged contains a credential or token.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from edgetrim import __version__
from edgetrim.errors import InvalidOptionError, RegistryAuthError, RegistryError
from edgetrim.transports.registry_auth import (
    Challenge,
    Credentials,
    basic_header,
    load_credentials,
    parse_challenges,
)

logger = logging.getLogger(__name__)

CA_CERT_VARIABLE = "EDGETRIM_CA_CERT"
INSECURE_VARIABLE = "EDGETRIM_INSECURE"
# Statuses that a later attempt may not get: rate limiting and server-side failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_ERROR_BODY = 64 * 1024
_MAX_TOKEN_BODY = 1024 * 1024
# A token without expires_in is valid for 60 seconds (Docker registry token authentication
# specification, field expires_in).
_DEFAULT_TOKEN_SECONDS = 60
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class RegistryOptions:
    """Settings for reaching registries.

    ``ca_cert`` is a PEM file of extra CAs to trust. ``insecure`` allows plain HTTP to
    loopback registries. ``chunk_size`` is the bytes per PATCH of a chunked blob upload, or
    None for monolithic uploads. ``retries`` bounds the extra attempts per request (and per
    blob upload). ``backoff`` is the first delay in seconds, doubled per attempt up to
    ``max_delay``, which also caps a server's Retry-After. ``timeout`` is in seconds per
    network operation. ``config_dir`` is the folder of Docker's config.json.
    """

    ca_cert: Path | None = None
    insecure: bool = False
    chunk_size: int | None = 16 << 20
    retries: int = 5
    backoff: float = 0.5
    max_delay: float = 10.0
    timeout: float = 60.0
    config_dir: Path | None = None

    @classmethod
    def from_environment(cls, **overrides: Any) -> RegistryOptions:
        """Return options with ``ca_cert`` and ``insecure`` from the environment, then overrides.

        An override of None leaves the environment's value.
        """
        ca_cert = os.environ.get(CA_CERT_VARIABLE)
        insecure = os.environ.get(INSECURE_VARIABLE, "").strip().lower() in _TRUE_WORDS
        options = cls(ca_cert=Path(ca_cert) if ca_cert else None, insecure=insecure)
        return replace(options, **{k: v for k, v in overrides.items() if v is not None})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Token:
    value: str
    expires: float


@dataclass
class _AuthState:
    challenge: Challenge | None = None
    credentials: Credentials | None = None
    credentials_loaded: bool = False
    tokens: dict[str, _Token] = field(default_factory=dict)


class RegistryClient:
    """Requests to one registry host, authenticated and retried.

    ``registry`` is the host name of the reference, used to look up credentials; ``api_host``
    (``host[:port]``) is where requests go. Use it as a context manager, or call close().
    """

    def __init__(
        self, registry: str, api_host: str, host_name: str, options: RegistryOptions
    ) -> None:
        self.registry = registry
        self.api_host = api_host
        self.options = options
        self._allow_http = options.insecure and is_loopback(host_name)
        self._base: str | None = None
        self._auth = _AuthState()
        self._http = httpx.Client(
            verify=_ssl_context(options.ca_cert),
            timeout=httpx.Timeout(options.timeout),
            headers={"User-Agent": f"edgetrim/{__version__}"},
            follow_redirects=False,
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections to the registry."""
        self._http.close()

    # -- the base URL ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``https://host[:port]``, or ``http://`` for an insecure loopback registry."""
        if self._base is None:
            self._base = self._ping()
        return self._base

    def _ping(self) -> str:
        """Find the scheme that reaches ``/v2/`` and remember the authentication challenge."""
        https = f"https://{self.api_host}"
        if self._allow_http:
            try:
                response = self._http.get(f"{https}/v2/")
            except httpx.TransportError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    # The server speaks TLS, so plain HTTP would not help; a CA is missing.
                    raise self._unreachable(exc, 1) from None
                logger.info("HTTPS to %s failed (%s); using plain HTTP", self.api_host, exc)
                base = f"http://{self.api_host}"
                response = self._send_with_retries("GET", f"{base}/v2/", None, {}, False)
            else:
                base = https
        else:
            base = https
            response = self._send_with_retries("GET", f"{base}/v2/", None, {}, False)
        with contextlib.closing(response):
            if response.status_code == 401:
                self._remember_challenge(response)
            elif response.status_code != 200:
                raise RegistryError(
                    f"{self.api_host}: GET /v2/ returned {response.status_code}, so this is not "
                    "a registry that speaks the OCI distribution API; check the host and port"
                )
        return base

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send a request, authenticating for ``scope`` and retrying what may succeed later.

        ``url`` is absolute or a path under the base URL. ``scope`` is a token scope such as
        ``repository:app:pull`` (several separated by spaces). Returns the response of the
        last attempt whatever its status; with ``stream`` its body is still unread, and the
        caller must close it. A body that is not bytes is sent once, without retries.
        """
        full_url = url if "://" in url else self.base_url + url
        headers = dict(headers or {})
        replayable = content is None or isinstance(content, bytes)
        for authenticated in (False, True):
            request_headers = {**headers, **self._authorization(scope)}
            response = self._send_with_retries(
                method,
                full_url,
                content,
                request_headers,
                stream,
                follow_redirects=follow_redirects,
                retry=replayable,
            )
            if response.status_code != 401 or authenticated or not replayable:
                return response
            response.close()
            self._remember_challenge(response)
            self._auth.tokens.pop(scope, None)
            self._authenticate(scope, fresh=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_with_retries(
        self,
        method: str,
        url: str,
        content: bytes | Iterable[bytes] | None,
        headers: dict[str, str],
        stream: bool,
        *,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        attempts = self.options.retries + 1 if retry else 1
        for attempt in range(1, attempts + 1):
            logger.debug("%s %s", method, _without_query(url))
            try:
                request = self._http.build_request(method, url, headers=headers, content=content)
                response = self._http.send(
                    request, stream=stream, follow_redirects=follow_redirects
                )
            except httpx.TransportError as exc:
                if attempt == attempts or _is_tls_failure(exc):
                    raise self._unreachable(exc, attempt) from None
                self._wait(attempt, f"{method} {_without_query(url)} failed ({exc})", None)
                continue
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                retry_after = response.headers.get("Retry-After")
                response.close()
                self._wait(
                    attempt,
                    f"{method} {_without_query(url)} returned {response.status_code}",
                    retry_after,
                )
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, reason: str, retry_after: str | None) -> None:
        delay = min(self.options.backoff * 2 ** (attempt - 1), self.options.max_delay)
        if retry_after is not None:
            # A Retry-After that is an HTTP date is ignored, and the backoff delay is used.
            with contextlib.suppress(ValueError):
                delay = min(max(float(retry_after), 0.0), self.options.max_delay)
        logger.info(
            "%s: %s; retrying in %.1f s (attempt %d of %d)",
            self.api_host,
            reason,
            delay,
            attempt + 1,
            self.options.retries + 1,
        )
        time.sleep(delay)

    def _unreachable(self, exc: httpx.TransportError, attempts: int) -> RegistryError:
        reason = str(exc) or type(exc).__name__
        advice = "check the host, the port and that the registry runs"
        if isinstance(exc, httpx.ConnectError) and "SSL" in reason.upper():
            advice = (
                "if the registry's certificate comes from a private CA, pass --ca-cert FILE or "
                f"set {CA_CERT_VARIABLE}; for a plain-HTTP registry on localhost, pass "
                f"--insecure or set {INSECURE_VARIABLE}=1"
            )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return RegistryError(
            f"{self.api_host}: cannot reach the registry ({reason}){tries}; {advice}"
        )

    # -- authentication ----------------------------------------------------------------------

    def _remember_challenge(self, response: httpx.Response) -> None:
        header = response.headers.get("WWW-Authenticate", "")
        challenges = parse_challenges(header)
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == scheme:
                    self._auth.challenge = challenge
                    return
        raise RegistryAuthError(
            f"{self.api_host}: the registry asks for authentication scheme "
            f"{header.split(' ')[0] or '(none)'!r}, which edgetrim does not support; "
            "it supports Basic and Bearer"
        )

    def _credentials(self) -> Credentials | None:
        if not self._auth.credentials_loaded:
            self._auth.credentials = load_credentials(
                self.registry, config_dir=self.options.config_dir
            )
            self._auth.credentials_loaded = True
        return self._auth.credentials

    def _authorization(self, scope: str) -> dict[str, str]:
        if self._base is None:
            self._base = self._ping()
        challenge = self._auth.challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            credentials = self._credentials()
            return {"Authorization": basic_header(credentials)} if credentials else {}
        token = self._authenticate(scope, fresh=False)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _authenticate(self, scope: str, *, fresh: bool) -> str | None:
        """Return a bearer token for ``scope``, fetched from the realm unless cached."""
        challenge = self._auth.challenge
        if challenge is None or challenge.scheme == "basic":
            if self._credentials() is None:
                raise self._auth_required()
            return None
        cached = self._auth.tokens.get(scope)
        if cached is not None and not fresh and cached.expires > time.monotonic():
            return cached.value
        token = self._fetch_token(challenge, scope)
        self._auth.tokens[scope] = token
        return token.value

    def _fetch_token(self, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryAuthError(
                f"{self.api_host}: the Bearer challenge names no realm to get a token from"
            )
        realm_url = httpx.URL(realm)

        credentials = self._credentials()
        headers = {}
        if credentials is not None:
            if realm_url.scheme != "https" and not is_loopback(realm_url.host):
                raise RegistryAuthError(
                    f"{self.api_host}: the token realm {realm} is not HTTPS, so edgetrim does "
                    "not send credentials to it"
                )
            headers["Authorization"] = basic_header(credentials)
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("scope", part) for part in scope.split()
        ]
        if "service" in challenge.params:
            params.insert(0, ("service", challenge.params["service"]))
        url = realm_url.copy_merge_params(params)

        response = self._send_with_retries("GET", str(url), None, headers, True)
        with contextlib.closing(response):
            if response.status_code in (401, 403):
                raise self._auth_rejected(response.status_code)
            if response.status_code != 200:
                raise RegistryAuthError(
                    f"{self.api_host}: the token server {realm_url.host} returned "
                    f"{response.status_code}: {error_summary(response)}"
                )
            body = read_limited(response, _MAX_TOKEN_BODY) or b""

        try:
            document = json.loads(body)
            value = document.get("token") or document.get("access_token")
            seconds = float(document.get("expires_in") or _DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            value, seconds = None, 0.0
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(
                f"{self.api_host}: the token server {realm_url.host} returned no token"
            )
        # Renew ten seconds early, so a token does not expire between check and use.
        return _Token(value, time.monotonic() + max(seconds - 10, 1))

    def _auth_required(self) -> RegistryAuthError:
        return RegistryAuthError(
            f"{self.registry}: the registry requires credentials and none were found for it "
            "in config.json of $DOCKER_CONFIG or ~/.docker; log in with docker login"
        )

    def _auth_rejected(self, status: int) -> RegistryAuthError:
        if self._credentials() is None:
            return self._auth_required()
        return RegistryAuthError(
            f"{self.registry}: the registry rejected the credentials from config.json "
            f"(HTTP {status}); log in again with docker login {self.registry}"
        )

    def check_auth(self, response: httpx.Response, what: str) -> None:
        """Raise RegistryAuthError for a 401 or 403 response to ``what``."""
        if response.status_code == 401:
            raise self._auth_rejected(401)
        if response.status_code == 403:
            raise RegistryAuthError(
                f"{self.registry}: access denied to {what} (HTTP 403); check that the "
                "account may pull or push this repository"
            )


def read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """Read a response body of at most ``limit`` bytes; return None if it is longer."""
    chunks: list[bytes] = []
    count = 0
    for chunk in response.iter_bytes():
        count += len(chunk)
        if count > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def error_summary(response: httpx.Response) -> str:
    """Return the registry's error codes and messages from a response body, on one line."""
    try:
        body = read_limited(response, _MAX_ERROR_BODY)
    except (httpx.HTTPError, httpx.StreamError):
        return "(no response body)"
    if body is None:
        return "(response body too long to show)"
    try:
        errors = json.loads(body).get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError, TypeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:200] or "(empty response body)"


def _is_tls_failure(exc: httpx.TransportError) -> bool:
    """True when a TLS handshake failed in a way that another attempt would repeat.

    That is a certificate that does not verify, or a protocol error such as
    WRONG_VERSION_NUMBER from a server that speaks plain HTTP. An unexpected EOF or a reset
    connection during the handshake may pass on a later attempt, so it is not a TLS failure.
    """
    if not isinstance(exc, httpx.ConnectError):
        return False
    transient = (ssl.SSLEOFError, ssl.SSLSyscallError, ssl.SSLZeroReturnError)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return not isinstance(cause, transient)
        cause = cause.__cause__ or cause.__context__
    return False


def _ssl_context(ca_cert: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_cert is not None:
        try:
            context.load_verify_locations(cafile=str(ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise InvalidOptionError(
                f"CA certificate {ca_cert}: cannot load ({exc}); pass a PEM file with "
                f"--ca-cert or {CA_CERT_VARIABLE}"
            ) from None
    return context


def _without_query(url: str) -> str:
    # Upload URLs carry the registry's upload state in the query; logs do not need it.
    return url.split("?", 1)[0]
