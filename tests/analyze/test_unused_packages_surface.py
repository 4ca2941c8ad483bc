"""Likely-unused kinds, dpkg attribution and the attack surface, on layers written here."""

from __future__ import annotations

import struct

import pytest

from edgetrim.analyze import Category, analyze_image
from edgetrim.analyze.surface import runs_as_root
from edgetrim.analyze.unused import is_toolchain_package
from tests.analyze.synthetic import directory, file, layer_tar, make_image, symlink

STATUS = b"""Package: bash
Status: install ok installed
Version: 5.2.15-2+b2
Architecture: amd64
Installed-Size: 7164
Description: GNU Bourne Again SHell
 a continuation line: with a colon

Package: libfoo-dev
Status: install ok installed
Version: 1.0-1
Architecture: amd64
Multi-Arch: same
Installed-Size: 12

Package: removed
Status: deinstall ok config-files
Version: 1
"""


def elf(e_type: int, size: int = 64) -> bytes:
    """Return a minimal little-endian ELF64 header of type ``e_type``, padded to ``size``."""
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<H", e_type)
    return header + b"\0" * (size - len(header))


@pytest.fixture(scope="module")
def debian_like():
    # A merged-/usr layout: /bin and /lib are symlinks, so the paths dpkg lists (/bin/bash,
    # /lib/...) reach the files through them.
    base = layer_tar(
        directory("usr"),
        directory("usr/bin"),
        directory("usr/lib"),
        symlink("bin", "usr/bin"),
        symlink("lib", "usr/lib"),
        file("usr/bin/bash", elf(3, 1000), mode=0o755),
        symlink("usr/bin/sh", "bash"),
        file("usr/bin/apt-get", elf(3, 300), mode=0o755),
        file("usr/bin/passwd", elf(3, 200), mode=0o4755),
        file("usr/bin/chage", elf(3, 100), mode=0o2755),
        file("usr/lib/libfoo.so.1", elf(3, 400)),
        file("usr/lib/libfoo-helper", b"h" * 40),
        file("usr/include/foo.h", b"#define FOO 1\n" * 10),
        file("usr/lib/libfoo.a", b"!<arch>\n" + b"o" * 92),
        file("usr/lib/pkgconfig/foo.pc", b"Name: foo\n"),
        file("usr/share/doc/bash/copyright", b"c" * 50),
        file("usr/share/man/man1/bash.1.gz", b"m" * 60),
        file("usr/share/locale/de/LC_MESSAGES/bash.mo", b"d" * 70),
        file("usr/share/locale/fr/LC_MESSAGES/bash.mo", b"f" * 80),
        file("var/lib/apt/lists/deb.debian.org_Packages", b"p" * 90),
        file("root/.cache/pip/http/abc", b"q" * 15),
        file("app/__pycache__/main.cpython-311.pyc", b"y" * 25),
        file("app/main.py", b"print('hi')\n"),
        directory("tmp", 0o1777),
        directory("srv/upload", 0o777),
        file("etc/passwd", b"root:x:0:0::/root:/bin/bash\napp:x:1000:1000::/app:/bin/sh\n"),
        file("var/lib/dpkg/status", STATUS),
        file(
            "var/lib/dpkg/info/bash.list", b"/.\n/bin\n/bin/bash\n/usr/share/doc/bash/copyright\n"
        ),
        file(
            "var/lib/dpkg/info/libfoo-dev:amd64.list",
            b"/lib/libfoo-helper\n/usr/include/foo.h\n/usr/lib/gone\n",
        ),
    )
    return analyze_image(make_image(base, env=["LANG=de_DE.UTF-8"], user="app"))


def kind_of(result, path):
    (copy,) = [c for c in result.copies if path in c.paths]
    return copy.kind if copy.category is Category.LIKELY_UNUSED else copy.category.value


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/usr/share/doc/bash/copyright", "docs"),
        ("/usr/share/man/man1/bash.1.gz", "docs"),
        ("/usr/share/locale/fr/LC_MESSAGES/bash.mo", "locale"),
        ("/usr/share/locale/de/LC_MESSAGES/bash.mo", "in_use"),  # LANG=de_DE.UTF-8
        ("/var/lib/apt/lists/deb.debian.org_Packages", "package_cache"),
        ("/root/.cache/pip/http/abc", "package_cache"),
        ("/app/__pycache__/main.cpython-311.pyc", "bytecode"),
        ("/usr/include/foo.h", "toolchain"),
        ("/usr/lib/libfoo.a", "toolchain"),
        ("/usr/lib/pkgconfig/foo.pc", "toolchain"),
        ("/usr/lib/libfoo-helper", "toolchain"),  # owned by a -dev package, found through /lib
        ("/usr/lib/libfoo.so.1", "in_use"),
        ("/app/main.py", "in_use"),
    ],
)
def test_likely_unused_kind(debian_like, path, expected):
    assert kind_of(debian_like, path) == expected


def test_likely_unused_by_kind_adds_up(debian_like):
    waste = debian_like.waste
    assert sum(waste.likely_unused_by_kind.values()) == waste.likely_unused_bytes
    assert waste.likely_unused_by_kind["locale"] == 80
    assert waste.likely_unused_by_kind["docs"] == 110


def test_dpkg_packages_attributed_through_symlinked_dirs(debian_like):
    packages = {p.name: p for p in debian_like.packages.packages}
    assert debian_like.packages.database == "dpkg"
    assert sorted(packages) == ["bash", "libfoo-dev"]  # "removed" keeps only config files
    bash = packages["bash"]
    assert (bash.version, bash.installed_size_kib, bash.toolchain) == ("5.2.15-2+b2", 7164, False)
    assert (bash.files, bash.bytes) == (2, 1000 + 50)
    dev = packages["libfoo-dev"]
    assert dev.toolchain
    assert (dev.files, dev.bytes) == (2, 40 + 140)  # /usr/lib/gone is not in the image
    assert [p.name for p in debian_like.packages.toolchain] == ["libfoo-dev"]
    assert [p.name for p in debian_like.packages.packages] == ["bash", "libfoo-dev"]


def test_attack_surface(debian_like):
    surface = debian_like.surface
    assert surface.shells == ["/usr/bin/bash", "/usr/bin/sh"]
    assert surface.package_managers == ["/usr/bin/apt-get"]
    assert [f.path for f in surface.setuid] == ["/usr/bin/passwd"]
    assert surface.setuid[0].mode == "-rwsr-xr-x"
    assert [f.path for f in surface.setgid] == ["/usr/bin/chage"]
    assert [f.path for f in surface.world_writable_dirs] == ["/srv/upload"]  # /tmp is sticky
    # The shared library has the ELF header but no execute bit.
    assert sorted(f.path for f in surface.elf_executables) == [
        "/usr/bin/apt-get",
        "/usr/bin/bash",
        "/usr/bin/chage",
        "/usr/bin/passwd",
    ]
    assert surface.user == "app"
    assert surface.runs_as_root is False


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", True),
        ("root", True),
        ("0", True),
        ("0:0", True),
        ("1000", False),
        ("app:app", False),
        ("nobody", None),
        ("root:wheel", True),
    ],
)
def test_runs_as_root(user, expected):
    passwd = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"
    assert runs_as_root(user, passwd) is expected


def test_unknown_user_is_noted():
    result = analyze_image(
        make_image(layer_tar(file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")), user="ghost")
    )
    assert result.surface.runs_as_root is None
    assert any("'ghost'" in note for note in result.notes)


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("gcc-12", True),
        ("cpp-12", True),
        ("libc6-dev", True),
        ("binutils", True),
        ("gcc-12-base", False),  # copyright files that libgcc-s1 depends on at run time
        ("libgcc-s1", False),
        ("libc6", False),
    ],
)
def test_toolchain_package_names(package, expected):
    assert is_toolchain_package(package) is expected
