"""docker:// against Debian's docker-registry on 127.0.0.1: pull, push, auth, TLS and faults.

Three real registries run for the module: plain HTTP, HTTPS with a test CA and htpasswd
(bcrypt) auth, and Bearer token auth with a token server of the test. A fault proxy in front
of the plain registry makes chosen requests fail, to check retries, fallbacks and resumes.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from edgetrim.errors import (
    DigestMismatchError,
    ImageFormatError,
    ImageNotFoundError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryError,
)
from edgetrim.image import mediatypes
from edgetrim.image.digest import Digest
from edgetrim.image.model import Descriptor, Image, Layer, Platform
from edgetrim.transports import RegistryOptions, open_image, parse_reference, write_image
from edgetrim.transports.registry_auth import load_credentials, parse_challenges
from edgetrim.transports.registry_client import RegistryClient
from tests.transports.registry_server import (
    PASSWORD,
    USER,
    CertificateAuthority,
    Fault,
    FaultProxy,
    Registry,
    TokenServer,
    write_docker_config,
)
from tests.transports.synthetic import gzipped, layer_tar, make_image, make_layer, two_layer_image

FIXTURE_CONFIGS = {
    "linux/amd64": "549248a7ac95478805d9248e4ffdc778fc2404257d8c071848746e0100e08099",
    "linux/arm64": "3cd6022503cef24ee80dc156bf171c8d1d588c2ea1904bcd8ef2728c36341594",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registries")


@pytest.fixture(scope="module")
def plain(folder: Path) -> Iterator[Registry]:
    with Registry(folder / "plain", foreign_urls=r"^https://example\.invalid/") as registry:
        yield registry


@pytest.fixture(scope="module")
def ca(folder: Path) -> CertificateAuthority:
    return CertificateAuthority(folder / "ca")


@pytest.fixture(scope="module")
def secure(folder: Path, ca: CertificateAuthority) -> Iterator[Registry]:
    with Registry(folder / "secure", tls=ca, htpasswd=True) as registry:
        yield registry


@pytest.fixture(scope="module")
def token_server(folder: Path) -> Iterator[TokenServer]:
    server = TokenServer(folder / "token-server")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_registry(folder: Path, token_server: TokenServer) -> Iterator[Registry]:
    with Registry(
        folder / "token", token_realm=token_server.realm, token_cert=token_server.cert
    ) as registry:
        yield registry


@pytest.fixture
def proxy(plain: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(plain.port) as server:
        yield server


@pytest.fixture
def no_credentials(tmp_path: Path) -> Path:
    empty = tmp_path / "docker-config-empty"
    empty.mkdir()
    return empty


@pytest.fixture
def options(no_credentials: Path) -> RegistryOptions:
    """Fast retries, plain HTTP to 127.0.0.1, small chunks, no credentials."""
    return RegistryOptions(
        insecure=True,
        chunk_size=4096,
        retries=3,
        backoff=0.01,
        max_delay=0.05,
        timeout=30,
        config_dir=no_credentials,
    )


def logged_in(tmp_path: Path, registry: Registry, password: str = PASSWORD) -> Path:
    return write_docker_config(tmp_path / "docker-config", registry.host, USER, password)


def big_image() -> Image:
    """An image whose gzip layer spans several 4 KiB chunks."""
    data = layer_tar({f"data/{i}.bin": bytes([i]) * 3000 + str(i).encode() for i in range(12)})
    blob = gzipped(data)
    assert len(blob) > 3 * 4096 or len(data) > 3 * 4096
    return make_image([make_layer(data, data), make_layer(blob, data)])


def read_layers(image: Image) -> None:
    for layer in image.layers:
        with layer.read_tar() as stream:
            while stream.read(1 << 20):
                pass


def assert_same(original: Image, copy: Image) -> None:
    assert copy.config.digest == original.config.digest
    assert [layer.diff_id for layer in copy.layers] == [layer.diff_id for layer in original.layers]
    assert [layer.digest for layer in copy.layers] == [layer.digest for layer in original.layers]


# -- references and credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("docker://127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1", None),
        ("docker://localhost/a/b", "localhost", "a/b", "latest", None),
        ("docker://busybox", "docker.io", "library/busybox", "latest", None),
        ("docker://docker.io/org/x:v2", "docker.io", "org/x", "v2", None),
        ("docker://[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        ("docker://quay.io/a/b@sha256:" + "e" * 64, "quay.io", "a/b", None, "sha256:" + "e" * 64),
    ],
)
def test_parse_docker_reference(text, registry, repository, tag, digest) -> None:
    reference = parse_reference(text).registry
    assert reference is not None
    assert (reference.registry, reference.repository) == (registry, repository)
    assert (reference.tag, reference.digest) == (tag, digest)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("docker:busybox", "starts with docker://"),
        ("docker://", "the image name is empty"),
        ("docker://Upper/case", "not a valid repository name"),
        ("docker://a/b:1@sha256:" + "e" * 64, "not both"),
        ("docker://a/b@sha256:abc", "not a valid digest"),
        ("docker://a/b:bad tag", "not a valid tag"),
    ],
)
def test_parse_docker_reference_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match=reason):
        parse_reference(text)


def test_credentials_from_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = base64.b64encode(b"alice:pa:ss").decode()
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw").decode()},
            "https://reg.example:5000": {"auth": auth},
            "other.example": {"username": "bob", "password": "pw"},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    alice = load_credentials("reg.example:5000")
    assert alice is not None
    assert (alice.username, alice.password) == ("alice", "pa:ss")
    assert "pa:ss" not in repr(alice)
    hub = load_credentials("docker.io")
    assert hub is not None
    assert hub.username == "hub"
    bob = load_credentials("other.example")
    assert bob is not None
    assert bob.password == "pw"
    assert load_credentials("unknown.example") is None


def test_malformed_docker_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RegistryAuthError, match="not valid JSON"):
        load_credentials("x", config_dir=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"x": {"auth": "!!!"}}}))
    with pytest.raises(RegistryAuthError, match="not base64"):
        load_credentials("x", config_dir=tmp_path)


def test_parse_challenges() -> None:
    header = 'Bearer realm="https://auth/token",service="reg",scope="repository:a:pull,push"'
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth/token",
        "service": "reg",
        "scope": "repository:a:pull,push",
    }
    assert [c.scheme for c in parse_challenges('Basic realm="x", Bearer realm="y"')] == [
        "basic",
        "bearer",
    ]


# -- plain HTTP registry --------------------------------------------------------------------------


def test_push_pull_roundtrip(plain: Registry, options: RegistryOptions) -> None:
    image = big_image()
    reference = f"docker://{plain.host}/roundtrip/app:1"
    digest = write_image(image, reference, registry=options)
    with open_image(reference, registry=options) as copy:
        assert_same(image, copy)
        assert copy.names == [f"{plain.host}/roundtrip/app:1"]
        assert copy.manifest_raw is not None
        assert Digest.of_bytes(copy.manifest_raw) == digest
        read_layers(copy)
    with open_image(f"docker://{plain.host}/roundtrip/app@{digest}", registry=options) as copy:
        assert copy.config.digest == image.config.digest


def test_push_by_digest(plain: Registry, options: RegistryOptions) -> None:
    image = two_layer_image()
    digest = write_image(image, f"docker://{plain.host}/bydigest:1", registry=options)
    again = write_image(image, f"docker://{plain.host}/bydigest@{digest}", registry=options)
    assert again == digest
    other = "sha256:" + "0" * 64
    with pytest.raises(InvalidReferenceError, match="push by tag"):
        write_image(image, f"docker://{plain.host}/bydigest@{other}", registry=options)


def test_http_needs_insecure(plain: Registry, options: RegistryOptions) -> None:
    strict = replace(options, insecure=False, retries=0)
    with (
        pytest.raises(RegistryError, match="--insecure") as caught,
        open_image(f"docker://{plain.host}/roundtrip/app:1", registry=strict),
    ):
        pass
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("registry.example", False),
        ("10.0.0.5", False),
        ("127.0.0.1.example", False),
    ],
)
def test_insecure_only_for_loopback(host: str, allowed: bool) -> None:
    # Building a client sends nothing, so no address other than 127.0.0.1 is contacted.
    options = RegistryOptions(insecure=True)
    with RegistryClient(host, f"{host}:5000", host, options) as client:
        assert client._allow_http is allowed


def test_missing_tag_and_repository(plain: Registry, options: RegistryOptions) -> None:
    write_image(two_layer_image(), f"docker://{plain.host}/present:1", registry=options)
    for reference in (f"{plain.host}/present:2", f"{plain.host}/absent/repo:1"):
        with (
            pytest.raises(ImageNotFoundError, match="has no manifest"),
            open_image(f"docker://{reference}", registry=options),
        ):
            pass


def test_existing_blobs_skipped(proxy: FaultProxy, options: RegistryOptions) -> None:
    image = big_image()
    reference = f"docker://{proxy.host}/skip/app:1"
    write_image(image, reference, registry=options)
    uploads_before = proxy.count("POST", r"/blobs/uploads/$")
    assert uploads_before == 3
    write_image(image, f"docker://{proxy.host}/skip/app:2", registry=options)
    assert proxy.count("POST", r"/blobs/uploads/$") == uploads_before
    assert proxy.count("HEAD", r"/skip/app/blobs/") >= 3


def test_chunked_and_monolithic_uploads(proxy: FaultProxy, options: RegistryOptions) -> None:
    image = big_image()
    write_image(image, f"docker://{proxy.host}/chunked:1", registry=options)
    largest = max(layer.size for layer in image.layers)
    assert proxy.count("PATCH", "/chunked/blobs/uploads/") >= -(-largest // 4096)
    monolithic = replace(options, chunk_size=None)
    write_image(image, f"docker://{proxy.host}/monolithic:1", registry=monolithic)
    assert proxy.count("PATCH", "/monolithic/") == 0
    with open_image(f"docker://{proxy.host}/monolithic:1", registry=options) as copy:
        read_layers(copy)


def test_patch_rejected_falls_back(proxy: FaultProxy, options: RegistryOptions) -> None:
    proxy.faults.append(Fault("PATCH", "/fallback/blobs/uploads/", times=100, status=405))
    image = big_image()
    write_image(image, f"docker://{proxy.host}/fallback:1", registry=options)
    assert proxy.count("PATCH", "/fallback/") == 2
    with open_image(f"docker://{proxy.host}/fallback:1", registry=options) as copy:
        assert_same(image, copy)
        read_layers(copy)


def test_cross_repository_mount(proxy: FaultProxy, options: RegistryOptions) -> None:
    image = big_image()
    write_image(image, f"docker://{proxy.host}/mount/source:1", registry=options)
    with open_image(f"docker://{proxy.host}/mount/source:1", registry=options) as pulled:
        write_image(pulled, f"docker://{proxy.host}/mount/dest:1", registry=options)
    mounts = [r for r in proxy.requests if r[0] == "POST" and r[1].startswith("/v2/mount/dest/")]
    assert [status for _, _, status in mounts].count(201) == 2
    assert proxy.count("PATCH", "/mount/dest/") == 0
    for layer in image.layers:
        assert proxy.count("GET", f"/mount/source/blobs/{layer.digest}") == 0
    with open_image(f"docker://{proxy.host}/mount/dest:1", registry=options) as copy:
        read_layers(copy)


def test_retries_on_429_and_5xx(proxy: FaultProxy, options: RegistryOptions) -> None:
    image = big_image()
    proxy.faults += [
        Fault("HEAD", "/retry/blobs/", times=2, status=503),
        Fault("POST", "/retry/blobs/uploads/", times=1, status=429, headers={"Retry-After": "0"}),
        Fault("PUT", "/retry/manifests/", times=1, status=502),
        Fault("GET", "/retry/manifests/", times=2, status=500),
    ]
    write_image(image, f"docker://{proxy.host}/retry:1", registry=options)
    with open_image(f"docker://{proxy.host}/retry:1", registry=options) as copy:
        read_layers(copy)
    assert all(fault.times == 0 for fault in proxy.faults)


def test_retries_are_bounded(proxy: FaultProxy, options: RegistryOptions) -> None:
    write_image(two_layer_image(), f"docker://{proxy.host}/bounded:1", registry=options)
    proxy.faults.append(Fault("GET", "/bounded/manifests/", times=100, status=503))
    with (
        pytest.raises(RegistryError, match="returned 503"),
        open_image(f"docker://{proxy.host}/bounded:1", registry=options),
    ):
        pass
    assert proxy.count("GET", "/bounded/manifests/") == options.retries + 1


def test_broken_download_resumes(proxy: FaultProxy, options: RegistryOptions) -> None:
    image = big_image()
    write_image(image, f"docker://{proxy.host}/resume:1", registry=options)
    largest = max(image.layers, key=lambda layer: layer.size)
    proxy.faults.append(Fault("GET", f"/resume/blobs/{largest.digest}", times=2, cut_after=5000))
    with open_image(f"docker://{proxy.host}/resume:1", registry=options) as copy:
        read_layers(copy)
    assert proxy.count("GET", f"/resume/blobs/{largest.digest}") == 3


def test_blob_with_wrong_content(proxy: FaultProxy, options: RegistryOptions) -> None:
    image = two_layer_image()
    write_image(image, f"docker://{proxy.host}/lies:1", registry=options)
    layer = image.layers[0]
    bad = b"x" * layer.size
    proxy.faults.append(Fault("GET", f"/lies/blobs/{layer.digest}", times=1, status=200, body=bad))
    with open_image(f"docker://{proxy.host}/lies:1", registry=options) as copy:
        with pytest.raises(DigestMismatchError, match="content digest"):
            read_layers(copy)
        proxy.faults.append(
            Fault("GET", f"/lies/blobs/{layer.digest}", times=1, status=200, body=bad + b"more")
        )
        with pytest.raises(DigestMismatchError, match="larger than"):
            read_layers(copy)


@pytest.mark.parametrize(
    ("body", "content_type", "error", "text"),
    [
        (b"{" * 10, mediatypes.OCI_MANIFEST, ImageFormatError, "not valid JSON"),
        (b" " * (9 << 20), mediatypes.OCI_MANIFEST, ImageFormatError, "larger than"),
        (
            json.dumps({"schemaVersion": 1, "name": "x"}).encode(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            ImageFormatError,
            "schema 1",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "config": {
                        "mediaType": "application/vnd.cncf.helm.config.v1+json",
                        "digest": "sha256:" + "1" * 64,
                        "size": 2,
                    },
                    "layers": [],
                }
            ).encode(),
            mediatypes.OCI_MANIFEST,
            ImageFormatError,
            "not a container image config",
        ),
    ],
    ids=["malformed", "huge", "schema1", "artifact"],
)
def test_bad_manifest_from_registry(
    proxy: FaultProxy, options: RegistryOptions, body: bytes, content_type: str, error, text: str
) -> None:
    proxy.faults.append(
        Fault(
            "GET",
            "/badmanifest/manifests/",
            times=1,
            status=200,
            headers={"Content-Type": content_type},
            body=body,
        )
    )
    with (
        pytest.raises(error, match=text),
        open_image(f"docker://{proxy.host}/badmanifest:1", registry=options),
    ):
        pass


def test_manifest_digest_header_mismatch(proxy: FaultProxy, options: RegistryOptions) -> None:
    proxy.faults.append(
        Fault(
            "GET",
            "/digestheader/manifests/",
            times=1,
            status=200,
            headers={
                "Content-Type": mediatypes.OCI_MANIFEST,
                "Docker-Content-Digest": "sha256:" + "2" * 64,
            },
            body=b"{}",
        )
    )
    with (
        pytest.raises(DigestMismatchError, match="registry reports"),
        open_image(f"docker://{proxy.host}/digestheader:1", registry=options),
    ):
        pass


def test_layer_kinds_survive_registry(
    plain: Registry, options: RegistryOptions, fixtures_dir: Path
) -> None:
    for kind in ("zstd", "estargz", "uncompressed", "gzip"):
        source = f"docker-archive:{fixtures_dir}/dive/test-oci-{kind}-image.tar"
        with open_image(source) as original:
            reference = f"docker://{plain.host}/kinds/{kind}:1"
            write_image(original, reference, registry=options)
            with open_image(
                reference, registry=options, platform=Platform("linux", "arm64")
            ) as copy:
                assert_same(original, copy)
                assert [layer.media_type for layer in copy.layers] == [
                    layer.media_type for layer in original.layers
                ]
                assert (
                    copy.layers[0].descriptor.annotations
                    == original.layers[0].descriptor.annotations
                )
                read_layers(copy)
    with open_image(f"docker://{plain.host}/kinds/zstd:1", registry=options) as copy:
        assert copy.layers[0].media_type == mediatypes.OCI_LAYER_ZSTD
    with open_image(f"docker://{plain.host}/kinds/estargz:1", registry=options) as copy:
        assert "containerd.io/snapshot/stargz/toc.digest" in copy.layers[0].descriptor.annotations


def test_empty_layer_and_history(plain: Registry, options: RegistryOptions) -> None:
    empty_tar = layer_tar({})
    files = layer_tar({"etc/motd": b"hi\n"})
    layers = [
        make_layer(files, files),
        make_layer(gzipped(empty_tar), empty_tar),
        make_layer(b"", b""),
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]},
        "history": [
            {"created_by": "COPY motd"},
            {"created_by": "ENV A=1", "empty_layer": True},
            {"created_by": "RUN true"},
            {"created_by": "RUN : > /dev/null"},
        ],
    }
    from edgetrim.image.model import ImageConfig

    image = Image(ImageConfig(json.dumps(config).encode()), layers)
    reference = f"docker://{plain.host}/empty-layers:1"
    write_image(image, reference, registry=options)
    with open_image(reference, registry=options) as copy:
        assert_same(image, copy)
        assert copy.config.history == config["history"]
        assert [layer.size for layer in copy.layers][2] == 0
        read_layers(copy)


def test_foreign_layer_pushed_by_url(plain: Registry, options: RegistryOptions) -> None:
    data = layer_tar({"windows/base": b"base"})
    blob = gzipped(data)
    foreign = Layer(
        Descriptor(
            mediatypes.DOCKER_FOREIGN_LAYER,
            Digest.of_bytes(blob),
            len(blob),
            urls=("https://example.invalid/base.tar.gz",),
        ),
        Digest.of_bytes(data),
        None,
        name="foreign base",
    )
    top = layer_tar({"app": b"app"})
    image = make_image([foreign, make_layer(top, top)])
    reference = f"docker://{plain.host}/foreign:1"
    write_image(image, reference, registry=options)
    with open_image(reference, registry=options) as copy:
        assert copy.layers[0].opener is None
        assert copy.layers[0].media_type == mediatypes.DOCKER_FOREIGN_LAYER
        assert copy.layers[0].descriptor.urls == ("https://example.invalid/base.tar.gz",)
        with pytest.raises(ImageFormatError, match="foreign layer"), copy.layers[0].read_tar():
            pass


def upload_layout(base_url: str, repository: str, layout: Path) -> None:
    """Upload every blob of an OCI layout and every manifest reachable from index.json as is."""
    with httpx.Client(base_url=base_url) as client:
        for blob in sorted((layout / "blobs" / "sha256").iterdir()):
            start = client.post(f"/v2/{repository}/blobs/uploads/")
            location = httpx.URL(start.headers["Location"])
            done = client.put(
                location.copy_merge_params({"digest": f"sha256:{blob.name}"}),
                content=blob.read_bytes(),
            )
            assert done.status_code == 201, done.text

        def put_manifest(descriptor: dict, reference: str) -> None:
            raw = (layout / "blobs" / "sha256" / descriptor["digest"][7:]).read_bytes()
            document = json.loads(raw)
            for child in document.get("manifests") or []:
                put_manifest(child, child["digest"])
            media_type = document.get("mediaType") or descriptor["mediaType"]
            answer = client.put(
                f"/v2/{repository}/manifests/{reference}",
                content=raw,
                headers={"Content-Type": media_type},
            )
            assert answer.status_code == 201, answer.text

        index = json.loads((layout / "index.json").read_bytes())
        for entry in index["manifests"]:
            put_manifest(entry, "latest")


@pytest.mark.parametrize("platform", sorted(FIXTURE_CONFIGS))
def test_nested_index_platforms(
    plain: Registry, options: RegistryOptions, fixtures_dir: Path, platform: str
) -> None:
    upload_layout(
        f"http://{plain.host}", "multi", fixtures_dir / "stereoscope/oci/multiplatform_oci_dir"
    )
    chosen = Platform(*platform.split("/"))
    with open_image(
        f"docker://{plain.host}/multi:latest", platform=chosen, registry=options
    ) as image:
        assert image.config.digest.hex == FIXTURE_CONFIGS[platform]
        read_layers(image)
    with (
        pytest.raises(ImageNotFoundError, match="no image for platform linux/s390x"),
        open_image(
            f"docker://{plain.host}/multi:latest",
            platform=Platform("linux", "s390x"),
            registry=options,
        ),
    ):
        pass


# -- TLS, basic auth and tokens -------------------------------------------------------------------


def test_tls_basic_auth(
    secure: Registry, ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_dir = logged_in(tmp_path, secure)
    options = RegistryOptions(ca_cert=ca.ca_cert, config_dir=config_dir, chunk_size=4096)
    image = big_image()
    reference = f"docker://{secure.host}/private/app:1"
    with caplog.at_level(logging.DEBUG):
        digest = write_image(image, reference, registry=options)
        with open_image(reference, registry=options) as copy:
            assert_same(image, copy)
            read_layers(copy)
    assert PASSWORD not in caplog.text
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in caplog.text
    assert digest == Digest.of_bytes(copy.manifest_raw or b"")


def test_tls_ca_from_environment(
    secure: Registry, ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGETRIM_CA_CERT", str(ca.ca_cert))
    monkeypatch.setenv("DOCKER_CONFIG", str(logged_in(tmp_path, secure)))
    write_image(two_layer_image(), f"docker://{secure.host}/env/app:1")
    with open_image(f"docker://{secure.host}/env/app:1") as copy:
        read_layers(copy)


def test_tls_unknown_ca(secure: Registry, tmp_path: Path) -> None:
    options = RegistryOptions(config_dir=logged_in(tmp_path, secure), retries=0, insecure=True)
    with (
        pytest.raises(RegistryError, match="--ca-cert") as caught,
        open_image(f"docker://{secure.host}/private/app:1", registry=options),
    ):
        pass
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_tls_auth_failures(secure: Registry, ca: CertificateAuthority, tmp_path: Path) -> None:
    anonymous = RegistryOptions(ca_cert=ca.ca_cert, config_dir=tmp_path)
    with (
        pytest.raises(RegistryAuthError, match="requires credentials"),
        open_image(f"docker://{secure.host}/private/app:1", registry=anonymous),
    ):
        pass
    wrong = replace(anonymous, config_dir=logged_in(tmp_path, secure, password="wrong"))
    with pytest.raises(RegistryAuthError, match="rejected the credentials") as caught:
        write_image(two_layer_image(), f"docker://{secure.host}/private/app:1", registry=wrong)
    assert "wrong" not in str(caught.value)


def test_bearer_token_auth(
    token_registry: Registry,
    token_server: TokenServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = big_image()
    reference = f"docker://{token_registry.host}/tokens/app:1"
    anonymous = RegistryOptions(insecure=True, config_dir=tmp_path, chunk_size=4096)
    with pytest.raises(RegistryAuthError, match="requires credentials"):
        write_image(image, reference, registry=anonymous)
    member = replace(anonymous, config_dir=logged_in(tmp_path, token_registry))
    with caplog.at_level(logging.DEBUG):
        write_image(image, reference, registry=member)
    # The token server lets anonymous users pull.
    with open_image(reference, registry=anonymous) as copy:
        assert_same(image, copy)
        read_layers(copy)
        write_image(copy, f"docker://{token_registry.host}/tokens/mounted:1", registry=member)
    scopes = [scope for user, requested in token_server.requests if user for scope in requested]
    assert "repository:tokens/app:pull,push" in scopes
    assert "repository:tokens/app:pull" in scopes
    assert PASSWORD not in caplog.text
    assert token_server.issued
    for token in token_server.issued:
        assert token not in caplog.text


def test_skopeo_reads_pushed_image(
    secure: Registry, ca: CertificateAuthority, tmp_path: Path
) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is missing; install the Debian package skopeo")
    options = RegistryOptions(ca_cert=ca.ca_cert, config_dir=logged_in(tmp_path, secure))
    image = big_image()
    digest = write_image(image, f"docker://{secure.host}/skopeo/app:1", registry=options)
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    shutil.copy(ca.ca_cert, cert_dir / "ca.crt")
    credentials = f"{USER}:{PASSWORD}"
    inspect = subprocess.run(
        ["skopeo", "inspect", "--cert-dir", str(cert_dir), "--creds", credentials,
         f"docker://{secure.host}/skopeo/app:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    report = json.loads(inspect.stdout)
    assert report["Digest"] == str(digest)
    assert report["Layers"] == [str(layer.digest) for layer in image.layers]
    copy = subprocess.run(
        ["skopeo", "copy", "--src-cert-dir", str(cert_dir), "--src-creds", credentials,
         f"docker://{secure.host}/skopeo/app:1", f"oci:{tmp_path / 'layout'}:copied"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    with open_image(f"oci:{tmp_path / 'layout'}:copied") as copied:
        # skopeo compresses the uncompressed layer, so only the config and diff IDs match.
        assert copied.config.digest == image.config.digest
        assert [layer.diff_id for layer in copied.layers] == [
            layer.diff_id for layer in image.layers
        ]
