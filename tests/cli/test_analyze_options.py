"""analyze's command line: --platform, registry options, -v after the command, early checks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.commands import edgetrim, one_error_line
from tests.transports.registry_server import (
    PASSWORD,
    USER,
    CertificateAuthority,
    Registry,
    write_docker_config,
)

MULTIPLATFORM = Path("stereoscope/oci/multiplatform_oci_dir")
SMALL_ARCHIVE = Path("go-containerregistry/whiteout_image.tar")


# -- --platform ----------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/amd64"])
def test_platform_picks_image(fixtures_dir, platform):
    reference = f"oci:{fixtures_dir / MULTIPLATFORM}"
    result = edgetrim("analyze", "--json", "--platform", platform, reference)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["platform"] == platform


def test_platform_mismatch_exit_2(fixtures_dir):
    reference = f"docker-archive:{fixtures_dir / SMALL_ARCHIVE}"
    line = one_error_line(edgetrim("analyze", "--platform", "linux/s390x", reference))
    assert "requested platform linux/s390x" in line


def test_platform_malformed_exit_2(fixtures_dir):
    reference = f"docker-archive:{fixtures_dir / SMALL_ARCHIVE}"
    result = edgetrim("analyze", "--platform", "arm64", reference)
    assert result.returncode == 2
    assert "'arm64' is not os/arch[/variant]" in result.stderr


# -- options after the command -------------------------------------------------------------------


def test_verbose_after_command(fixtures_dir):
    reference = f"docker-archive:{fixtures_dir / SMALL_ARCHIVE}"
    quiet = edgetrim("analyze", "--json", reference)
    verbose = edgetrim("analyze", "-v", "--json", reference)
    assert quiet.returncode == 0, quiet.stderr
    assert verbose.returncode == 0, verbose.stderr
    assert " INFO " not in quiet.stderr
    assert " INFO edgetrim." in verbose.stderr
    assert json.loads(verbose.stdout)["images"][0]["source"] == reference


def test_debug_after_command(tmp_path):
    result = edgetrim("analyze", "--debug", f"docker-archive:{tmp_path / 'absent.tar'}")
    assert result.returncode != 0
    assert "No such option" not in result.stderr
    assert "Traceback" in result.stderr


def test_help_lists_every_transport():
    result = edgetrim("analyze", "--help")
    assert result.returncode == 0, result.stderr
    # click wraps the help after hyphens, so the text is joined without those line breaks.
    text = " ".join(result.stdout.split()).replace("- ", "-")
    for form in ("docker-archive:", "oci:", "oci-archive:", "docker://", "docker-daemon:"):
        assert form in text, form
    for option in ("--platform", "--ca-cert", "--insecure"):
        assert option in text


# -- sources are checked before any image is read ------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "name"),
    [("docker-archive", "absent.tar"), ("oci", "absent-layout"), ("oci-archive", "absent.tar")],
)
def test_missing_later_source_reported_first(fixtures_dir, tmp_path, transport, name):
    missing = f"{transport}:{tmp_path / name}"
    alone = one_error_line(edgetrim("analyze", missing))
    # Reading the first source fails, because that file is not an image. The missing second
    # source must be reported instead, because it is checked before any image is read.
    not_an_image = f"docker-archive:{fixtures_dir / 'dive' / 'test-gzip-image.tar'}"
    line = one_error_line(edgetrim("analyze", not_an_image, missing))
    assert line == alone
    assert name in line


def test_mistyped_transport_suggestion_parses(fixtures_dir):
    archive = fixtures_dir / "dive" / "test-docker-image.tar"
    line = one_error_line(edgetrim("analyze", f"docker-archve:{archive}"))
    assert f"did you mean docker-archive:{archive}?" in line
    assert "docker-archive:docker-archve:" not in line
    assert edgetrim("analyze", "--json", f"docker-archive:{archive}").returncode == 0


# -- registries ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("plain-registry")) as registry:
        yield registry


@pytest.fixture(scope="module")
def pushed(plain_registry: Registry, fixtures_dir: Path) -> str:
    reference = f"docker://{plain_registry.host}/analyze/app:1"
    result = edgetrim(
        "copy", "--insecure", f"docker-archive:{fixtures_dir / SMALL_ARCHIVE}", reference
    )
    assert result.returncode == 0, result.stderr
    return reference


def test_insecure_reads_plain_http_registry(pushed):
    result = edgetrim("analyze", "--insecure", "--json", pushed)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["source"] == pushed


def test_plain_http_without_insecure_fails_at_once(pushed):
    started = time.monotonic()
    line = one_error_line(edgetrim("analyze", pushed))
    elapsed = time.monotonic() - started
    assert "WRONG_VERSION_NUMBER" in line
    assert "--insecure" in line
    assert "--ca-cert" in line
    assert "attempts" not in line
    # Retrying with the default backoff takes about 16 s, and one attempt about 1 s.
    assert elapsed < 8, elapsed


def test_ca_cert_reads_tls_registry(tmp_path_factory, fixtures_dir, tmp_path):
    ca = CertificateAuthority(tmp_path_factory.mktemp("analyze-ca"))
    folder = tmp_path_factory.mktemp("tls-registry")
    with Registry(folder, tls=ca, htpasswd=True) as registry:
        config = write_docker_config(tmp_path / "config", registry.host, USER, PASSWORD)
        env = {"DOCKER_CONFIG": str(config)}
        reference = f"docker://{registry.host}/analyze/tls:1"
        source = f"docker-archive:{fixtures_dir / SMALL_ARCHIVE}"
        pushed = edgetrim("copy", "--ca-cert", str(ca.ca_cert), source, reference, env=env)
        assert pushed.returncode == 0, pushed.stderr

        without_ca = one_error_line(edgetrim("analyze", reference, env=env))
        assert "CERTIFICATE_VERIFY_FAILED" in without_ca
        assert "--ca-cert" in without_ca

        result = edgetrim("analyze", "--json", "--ca-cert", str(ca.ca_cert), reference, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["images"][0]["source"] == reference


def test_ca_cert_must_exist(fixtures_dir, tmp_path):
    reference = f"docker-archive:{fixtures_dir / SMALL_ARCHIVE}"
    result = edgetrim("analyze", "--ca-cert", str(tmp_path / "absent.pem"), reference)
    assert result.returncode == 2
    assert "absent.pem" in result.stderr
