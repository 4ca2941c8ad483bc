"""Parsing of probe options."""

from __future__ import annotations

import pytest

from edgetrim.errors import InvalidOptionError
from edgetrim.trace.probes import ExecProbe, HostProbe, HttpProbe, ProbeAnswer, TcpProbe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", HttpProbe(8080, "/", "GET", None)),
        ("8080/", HttpProbe(8080, "/", "GET", None)),
        ("8080/health?full=1", HttpProbe(8080, "/health?full=1", "GET", None)),
        ("8080/items,method=post,status=201", HttpProbe(8080, "/items", "POST", 201)),
        ("443/,status=404", HttpProbe(443, "/", "GET", 404)),
    ],
)
def test_http_probe_parsed(text, expected):
    assert HttpProbe.parse(text) == expected


@pytest.mark.parametrize("text", ["web", "0/", "70000/", "8080/,status=99", "8080/,verb=GET"])
def test_http_probe_invalid(text):
    with pytest.raises(InvalidOptionError, match="--http-probe"):
        HttpProbe.parse(text)


def test_tcp_probe_parsed():
    assert TcpProbe.parse("1883") == TcpProbe(1883)
    with pytest.raises(InvalidOptionError, match="--tcp-probe"):
        TcpProbe.parse("mqtt")


def test_exec_probe_split():
    assert ExecProbe.parse("sh -c 'echo ok'").argv == ("sh", "-c", "echo ok")
    with pytest.raises(InvalidOptionError, match="quoting"):
        ExecProbe.parse("sh -c 'unclosed")
    with pytest.raises(InvalidOptionError, match="empty"):
        ExecProbe.parse("   ")


def test_host_probe_kept_verbatim():
    assert HostProbe.parse("curl -s 127.0.0.1:1/ | wc -c").command == "curl -s 127.0.0.1:1/ | wc -c"


def test_answer_names_status_kind():
    assert ProbeAnswer("GET http://127.0.0.1:1/", 200, b"").status_name == "status"
    assert ProbeAnswer("exec true", 0, b"").status_name == "exit code"
    assert ProbeAnswer("command", 3, b"").status_name == "exit code"
