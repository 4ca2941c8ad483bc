"""Static rules: files a program needs that a single traced run may not open.

Each rule looks at what is kept so far and adds what glibc, a TLS library, Python, Node or a
JVM loads by name at run time, so that a code path the probes did not reach still finds it.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable

from edgetrim.fs.tree import FileTree
from edgetrim.minimize.closure import ClosureBuilder

LIBRARY_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")
TLS_LIBRARIES = ("libssl.so*", "libgnutls.so*", "libnss3.so*", "libmbedtls.so*", "libwolfssl.so*")
# The trust store and OpenSSL's configuration, not all of /usr/lib/ssl, because its misc/ folder
# contains Perl scripts, which would bring Perl into the image.
CA_PATHS = ("/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/ca-certificates.conf",
            "/etc/ssl/openssl.cnf", "/usr/lib/ssl/certs", "/usr/lib/ssl/openssl.cnf",
            "/usr/lib/ssl/cert.pem")  # fmt: skip
NSS_CONFIG = "/etc/nsswitch.conf"
NSS_FILES = ("/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/host.conf")


def _basename_matches(path: str, patterns: tuple[str, ...]) -> bool:
    name = posixpath.basename(path)
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _library_files(tree: FileTree, pattern: str) -> list[str]:
    """Find files named like ``pattern`` in the library directories and their subdirectories."""
    found = []
    for base in LIBRARY_DIRS:
        for directory in [base, *tree.children(base)]:
            for child in tree.children(directory):
                if fnmatch.fnmatch(posixpath.basename(child), pattern):
                    found.append(child)
    return found


def _keep_tree(closure: ClosureBuilder, root: str, reason: str) -> None:
    """Keep ``root`` and everything under it, following the path's own symlinks."""
    resolved = closure.tree.resolve(root).path
    if resolved is None:
        return
    closure.add_path(root, reason)
    stack = [resolved]
    while stack:
        for child in closure.tree.children(stack.pop()):
            closure.add_path(child, reason)
            entry = closure.tree.get(child)
            if entry is not None and entry.is_dir:
                stack.append(child)


def nss_modules(closure: ClosureBuilder) -> None:
    """Keep the NSS modules nsswitch.conf names, because glibc dlopens them by service name.

    This applies whenever glibc is kept, because any user, group or host lookup on a code path
    the probes did not reach loads them, and they are small.
    """
    if not any(posixpath.basename(path) == "libc.so.6" for path in closure.keep.paths()):
        return
    for path in NSS_FILES:
        if path in closure.tree:
            closure.add_path(path, "name-service configuration")
    services: set[str] = set()
    for line in closure.read_text(NSS_CONFIG).splitlines():
        database, _, sources = line.split("#", 1)[0].partition(":")
        if database.strip() and sources:
            services |= {w for w in re.split(r"\s+", sources) if w and not w.startswith("[")}
    for service in sorted(services):
        for path in _library_files(closure.tree, f"libnss_{service}.so*"):
            closure.add_path(path, f"NSS module for the {service!r} service in nsswitch.conf")


def gconv_modules(closure: ClosureBuilder) -> None:
    """Keep the gconv configuration and modules directory when iconv was used."""
    used = [p for p in closure.keep.paths() if "/gconv/" in p]
    for directory in sorted({p.split("/gconv/")[0] + "/gconv" for p in used}):
        for child in closure.tree.children(directory):
            if posixpath.basename(child).startswith("gconv-modules"):
                _keep_tree(closure, child, "gconv module configuration, read by iconv")


def ca_certificates(closure: ClosureBuilder) -> None:
    """Keep the CA bundle and the hashed certificate directory when a TLS library is kept."""
    kept = closure.keep.paths()
    tls = [p for p in kept if _basename_matches(p, TLS_LIBRARIES) or "/_ssl." in p]
    if not tls:
        return
    reason = f"CA certificates for {posixpath.basename(sorted(tls)[0])}"
    for path in CA_PATHS:
        if closure.tree.resolve(path).path is not None:
            _keep_tree(closure, path, reason)


def python_metadata(closure: ClosureBuilder) -> None:
    """Keep ``.pth`` files and the metadata of imported distributions in kept site directories."""
    kept = closure.keep.paths()
    site_dirs = {m.group(0) for p in kept if (m := re.match(r".*/(?:site|dist)-packages", p))}
    for site in sorted(site_dirs):
        imported = {p[len(site) + 1 :].split("/")[0] for p in kept if p.startswith(site + "/")}
        imported = {name.split(".")[0].lower() for name in imported if name}
        for child in closure.tree.children(site):
            name = posixpath.basename(child)
            if name.endswith(".pth"):
                closure.add_path(child, "path configuration file read by Python's site module")
            elif name.endswith((".dist-info", ".egg-info")) and _distribution_imported(
                closure, child, imported
            ):
                _keep_tree(closure, child, "metadata of an imported Python distribution")


def _distribution_imported(closure: ClosureBuilder, info_dir: str, imported: set[str]) -> bool:
    """Tell whether a dist-info directory belongs to a package that the run imported."""
    project = posixpath.basename(info_dir).split("-")[0].lower().replace("-", "_")
    if project in imported:
        return True
    top_level = closure.read_text(posixpath.join(info_dir, "top_level.txt"))
    return any(line.strip().lower() in imported for line in top_level.splitlines())


def node_packages(closure: ClosureBuilder) -> None:
    """Keep every package.json on the module resolution path of each kept JavaScript file."""
    scripts = [
        p for p in closure.keep.paths() if p.endswith((".js", ".cjs", ".mjs", ".node", ".json"))
    ]
    seen: set[str] = set()
    for script in scripts:
        directory = posixpath.dirname(script)
        while directory not in seen:
            seen.add(directory)
            manifest = posixpath.join(directory, "package.json")
            if manifest in closure.tree:
                closure.add_path(
                    manifest, f"package.json on the module resolution path of {script}"
                )
            if directory == "/":
                break
            directory = posixpath.dirname(directory)


def jvm_runtime(closure: ClosureBuilder) -> None:
    """Keep what a JVM maps and reads at start-up besides the files the trace saw it open."""
    homes = {m.group(0) for p in closure.keep.paths() if (m := re.match(r"/usr/lib/jvm/[^/]+", p))}
    for home in sorted(homes):
        for relative in ("lib/modules", "lib/jvm.cfg", "lib/tzdb.dat", "lib/security", "conf",
                         "release", "lib/server/classes.jsa"):  # fmt: skip
            path = posixpath.join(home, relative)
            if closure.tree.resolve(path).path is not None:
                _keep_tree(closure, path, f"read or mapped by the JVM in {home}")


RULES: tuple[Callable[[ClosureBuilder], None], ...] = (
    nss_modules,
    gconv_modules,
    ca_certificates,
    python_metadata,
    node_packages,
    jvm_runtime,
)


def apply_rules(closure: ClosureBuilder) -> None:
    """Apply every static rule until the keep set stops growing, closing over ELF deps each time."""
    while True:
        before = len(closure.keep)
        for rule in RULES:
            rule(closure)
        closure.close()
        if len(closure.keep) == before:
            return
