"""Decide which files an image likely never uses at run time, by path and by owning package.

These are heuristics, so the report calls the bytes "likely unused" and never adds them to the
certain waste (overwritten, deleted, duplicate). A file gets at most one kind, the first of
:data:`KINDS` whose rule matches.
"""

from __future__ import annotations

import functools
import re

PACKAGE_CACHE = "package_cache"
BYTECODE = "bytecode"
DOCS = "docs"
LOCALE = "locale"
TOOLCHAIN = "toolchain"

KINDS = (PACKAGE_CACHE, BYTECODE, DOCS, LOCALE, TOOLCHAIN)

_PACKAGE_CACHE = re.compile(
    r"^(/var/lib/apt/lists/|/var/cache/apt/|/var/cache/apk/|/var/cache/yum/|/var/cache/dnf/"
    r"|/var/cache/debconf/[^/]+-old$|/root/\.cache/pip/|/home/[^/]+/\.cache/pip/"
    r"|/tmp/pip-|/root/\.npm/_cacache/|/usr/local/share/\.cache/)"
)
_BYTECODE = re.compile(r"(/__pycache__/|\.py[co]$)")
_DOCS = re.compile(
    r"^(/usr/share/doc/|/usr/share/doc-base/|/usr/share/man/|/usr/share/info/"
    r"|/usr/share/gtk-doc/|/usr/local/share/man/|/usr/local/share/doc/|/usr/share/help/)"
)
_LOCALE_DIR = re.compile(r"^/usr/share/locale/([^/]+)/")
# Toolchain paths in two parts: prefixes, and suffixes that only paths ending in ".pc" or ".a"
# can match. Searching the second part in every path took most of the time of classify().
_TOOLCHAIN_PREFIX = re.compile(
    r"(/usr/include/|/usr/local/include/|/usr/lib/gcc/|/usr/libexec/gcc/"
    r"|/usr/bin/([a-z0-9_]+-linux-gnu[a-z]*-)?"
    r"(gcc|g\+\+|c\+\+|cc|cpp|ld|ld\.bfd|ld\.gold|as|ar|ranlib|nm|objdump|objcopy|strip"
    r"|readelf|gprof|make)(-\d+)?$)"
)
_TOOLCHAIN_SUFFIX = re.compile(r"(/pkgconfig/[^/]+\.pc$|/lib[^/]*/(.*/)?[^/]+\.a$)")
# "$" also matches before a newline that ends the path.
_TOOLCHAIN_ENDINGS = (".pc", ".a", ".pc\n", ".a\n")
# Packages whose files are build tools: compilers, linkers, their helper libraries, headers.
_TOOLCHAIN_PACKAGE = re.compile(
    r"^((gcc|g\+\+|cpp|gfortran|clang|llvm|lld|binutils)(-.*)?|.*-dev"
    r"|make|dpkg-dev|build-essential|libc-dev-bin|libcc1-0|libisl\d+|libmpc\d+|libmpfr\d+"
    r"|lib(a|t|l|ub|hwa)san\d+|libitm\d+|libctf0|libctf-nobfd0|libbinutils|libgprofng\d+"
    r"|patch|pkgconf|pkgconf-bin|pkg-config|autoconf|automake|libtool|cmake|cmake-data"
    r"|bison|flex|m4)$"
)


# Runtime packages whose names look like the compiler's: gcc-12-base holds only the copyright
# and changelog files that libgcc-s1 and libstdc++6, needed at run time, depend on.
_RUNTIME_LOOKALIKES = re.compile(r"^gcc-\d+-base$")


@functools.lru_cache(maxsize=4096)
def is_toolchain_package(name: str) -> bool:
    """Tell whether a Debian package (name without ``:arch``) exists only to build software."""
    if _RUNTIME_LOOKALIKES.match(name):
        return False
    return _TOOLCHAIN_PACKAGE.match(name) is not None


def configured_languages(env: list[str]) -> set[str]:
    """Return the locale language codes the image's environment selects (``de``, ``de_DE``).

    LC_ALL wins over LANG, as in POSIX. The C and POSIX locales select no translation.
    """
    values = dict(item.split("=", 1) for item in env if "=" in item)
    locale = values.get("LC_ALL") or values.get("LANG") or ""
    name = locale.split(".", 1)[0].split("@", 1)[0]
    if name in ("", "C", "POSIX"):
        return set()
    return {name, name.split("_", 1)[0]}


def classify(path: str, package: str | None, languages: set[str]) -> str | None:
    """Return the likely-unused kind of the file at ``path``, or None if it is likely used.

    ``package`` is the Debian package that owns the file, if known. ``languages`` is what
    :func:`configured_languages` returned: translations for other languages are unused.
    """
    if _PACKAGE_CACHE.match(path):
        return PACKAGE_CACHE
    # The substring tests only skip searches that cannot match.
    if ("/__pycache__/" in path or ".py" in path) and _BYTECODE.search(path):
        return BYTECODE
    if _DOCS.match(path):
        return DOCS
    locale = _LOCALE_DIR.match(path)
    if locale and locale.group(1).split(".", 1)[0].split("@", 1)[0] not in languages:
        return LOCALE
    if _TOOLCHAIN_PREFIX.match(path) or (
        path.endswith(_TOOLCHAIN_ENDINGS) and _TOOLCHAIN_SUFFIX.search(path)
    ):
        return TOOLCHAIN
    if package is not None and is_toolchain_package(package):
        return TOOLCHAIN
    return None
