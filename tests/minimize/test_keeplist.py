"""The keep-list file format: round trips, odd paths, and invalid files."""

from __future__ import annotations

import pytest

from edgetrim.errors import InvalidOptionError
from edgetrim.minimize.keeplist import (
    decode_path,
    encode_path,
    format_keep_list,
    read_keep_list,
    write_keep_list,
)

ODD_PATHS = [
    "/usr/bin/python3",
    "/srv/data file.txt",
    "/srv/a#b",
    "/srv/100%",
    "/srv/line\nbreak",
    "/srv/caf\u00e9",
    "/srv/\udcff-not-utf8",
]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_path_encoding_round_trip(path):
    encoded = encode_path(path)
    assert " " not in encoded
    assert "#" not in encoded
    assert "\n" not in encoded
    assert decode_path(encoded) == path


def test_plain_paths_stay_readable():
    assert (
        encode_path("/usr/lib/x86_64-linux-gnu/libc.so.6") == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    )


def test_file_round_trip(tmp_path):
    entries = [(path, f"reason {i}") for i, path in enumerate(ODD_PATHS)] + [("/etc", "")]
    target = tmp_path / "app.keep"
    write_keep_list(target, entries, header=["source: test"])
    assert sorted(read_keep_list(target)) == sorted(entries)
    assert target.read_text().startswith("edgetrim-keep-list 1\n# source: test\n")


def test_hand_edits_accepted(tmp_path):
    target = tmp_path / "edited.keep"
    target.write_text(
        "edgetrim-keep-list 1\n\n# added by hand:\n"
        "  /usr/share/zoneinfo//UTC  \n/etc/hosts  # why\n"
    )
    assert read_keep_list(target) == [("/usr/share/zoneinfo/UTC", ""), ("/etc/hosts", "why")]


def test_sorted_output():
    text = format_keep_list([("/b", "x"), ("/a", "y")])
    assert text.splitlines()[1:] == ["/a  # y", "/b  # x"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "first line"),
        ("edgetrim-keep-list 2\n/a\n", "first line"),
        ("edgetrim-keep-list 1\nrelative/path\n", ":2:"),
    ],
)
def test_invalid_files_rejected(tmp_path, content, message):
    target = tmp_path / "bad.keep"
    target.write_text(content)
    with pytest.raises(InvalidOptionError, match=message):
        read_keep_list(target)


def test_missing_file_rejected(tmp_path):
    with pytest.raises(InvalidOptionError, match="not found"):
        read_keep_list(tmp_path / "absent.keep")
