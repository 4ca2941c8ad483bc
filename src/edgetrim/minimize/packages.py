"""Rewrite the dpkg database of a minimized image so that it lists only what is still there.

Vulnerability scanners read ``/var/lib/dpkg/status`` to learn what an image contains. After
minimization most packages have no files left; listing them would report vulnerabilities in
code that is gone, and hiding partly kept packages would hide real ones. So the rewritten
status keeps every package with at least one kept file, marks the partly kept ones, and the
``info/<package>.list`` and ``.md5sums`` files list only the kept files.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass, field

from edgetrim.fs.tree import FileTree
from edgetrim.minimize.closure import ClosureBuilder

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_INFO = "/var/lib/dpkg/info"
PARTIAL_FIELD = "Edgetrim-Kept-Files"


@dataclass
class Package:
    """One installed package of the dpkg database and which of its files are kept."""

    name: str
    version: str
    architecture: str
    paragraph: str
    files: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    list_path: str = ""

    @property
    def partial(self) -> bool:
        return 0 < len(self.kept) < len(self.files)


def _paragraphs(text: str) -> list[str]:
    return [block.strip("\n") for block in text.split("\n\n") if block.strip()]


def _field(paragraph: str, name: str) -> str:
    for line in paragraph.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""


def read_packages(closure: ClosureBuilder) -> list[Package]:
    """Read the installed packages and, from their file lists, which of their files are kept."""
    packages = []
    for paragraph in _paragraphs(closure.read_text(DPKG_STATUS, limit=64 << 20)):
        name = _field(paragraph, "Package")
        if not name or "installed" not in _field(paragraph, "Status").split():
            continue
        package = Package(
            name, _field(paragraph, "Version"), _field(paragraph, "Architecture"), paragraph
        )
        for candidate in (f"{name}:{package.architecture}.list", f"{name}.list"):
            list_path = posixpath.join(DPKG_INFO, candidate)
            if list_path in closure.tree:
                package.list_path = list_path
                break
        package.files = _package_files(closure, package.list_path)
        package.kept = [path for path in package.files if _is_kept(closure, path)]
        packages.append(package)
    return packages


def _package_files(closure: ClosureBuilder, list_path: str) -> list[str]:
    files = []
    for line in closure.read_text(list_path, limit=64 << 20).splitlines() if list_path else []:
        # A package's symlink (libz.so of a -dev package) is its own file, not its target's.
        resolved = closure.tree.resolve(line, follow_last=False).path
        entry = closure.tree.get(resolved) if resolved else None
        # dpkg lists directories too; with merged /usr, /lib is one that is now a symlink.
        if entry is not None and not entry.is_dir and not _is_directory(closure.tree, line):
            files.append(line)
    return files


def _is_kept(closure: ClosureBuilder, path: str) -> bool:
    resolved = closure.tree.resolve(path, follow_last=False).path
    return resolved is not None and resolved in closure.keep


def rewrite_database(closure: ClosureBuilder, packages: list[Package]) -> dict[str, bytes]:
    """Keep the dpkg database files and return their rewritten content, by image path."""
    if not packages:
        return {}
    kept = [package for package in packages if package.kept]
    replacements: dict[str, bytes] = {}
    closure.add_path(DPKG_STATUS, "package database, rewritten to list the kept packages")
    paragraphs = []
    for package in kept:
        paragraph = package.paragraph
        if package.partial:
            paragraph += f"\n{PARTIAL_FIELD}: {len(package.kept)} of {len(package.files)}"
        paragraphs.append(paragraph)
    replacements[DPKG_STATUS] = ("\n\n".join(paragraphs) + "\n").encode()
    for package in kept:
        _keep_listed_paths(closure, package)
        replacements.update(_rewrite_info(closure, package))
    return {path: data for path, data in replacements.items() if path in closure.keep}


def _keep_listed_paths(closure: ClosureBuilder, package: Package) -> None:
    """Keep the directory symlinks that the package's listed paths of kept files go through.

    dpkg lists /sbin/getcap while the run found /usr/sbin/getcap. Without the /sbin link a
    scanner that reads the .list finds none of the package's files.
    """
    for path in package.kept:
        for link in closure.tree.resolve(path, follow_last=False).symlinks:
            closure.add_path(link, f"directory symlink in paths that {package.name} lists")


def _rewrite_info(closure: ClosureBuilder, package: Package) -> dict[str, bytes]:
    """Keep a package's .list and .md5sums files, cut down to its kept files."""
    if not package.list_path:
        return {}
    out: dict[str, bytes] = {}
    kept_files = set(package.kept)
    listed = closure.read_text(package.list_path, limit=64 << 20).splitlines()
    remaining = [line for line in listed if line in kept_files or _is_directory(closure.tree, line)]
    closure.add_path(package.list_path, f"file list of kept package {package.name}")
    out[package.list_path] = ("\n".join(remaining) + "\n").encode()
    sums_path = package.list_path.removesuffix(".list") + ".md5sums"
    if sums_path in closure.tree:
        closure.add_path(sums_path, f"checksums of kept package {package.name}")
        lines = closure.read_text(sums_path, limit=64 << 20).splitlines()
        sums = [line for line in lines if "/" + line.partition("  ")[2] in kept_files]
        out[sums_path] = ("\n".join(sums) + "\n").encode() if sums else b""
    return out


def _is_directory(tree: FileTree, path: str) -> bool:
    resolved = tree.resolve(path).path
    entry = tree.get(resolved) if resolved else None
    return entry is not None and entry.is_dir


def cyclonedx_sbom(packages: list[Package], *, image_name: str, config_digest: str) -> str:
    """Return a CycloneDX 1.5 JSON SBOM of the kept packages of a minimized image.

    The serial number derives from the config digest, so the same image gives the same SBOM.
    """
    components = []
    for package in sorted((p for p in packages if p.kept), key=lambda p: p.name):
        purl = f"pkg:deb/debian/{package.name}@{package.version}"
        if package.architecture:
            purl += f"?arch={package.architecture}"
        components.append({
            "type": "library",
            "bom-ref": purl,
            "name": package.name,
            "version": package.version,
            "purl": purl,
            "properties": [
                {"name": "edgetrim:files-kept", "value": str(len(package.kept))},
                {"name": "edgetrim:files-installed", "value": str(len(package.files))},
            ],
        })  # fmt: skip
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'edgetrim:' + config_digest)}",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "edgetrim"}]},
            "component": {
                "type": "container",
                "bom-ref": config_digest,
                "name": image_name,
                "version": config_digest,
            },
        },
        "components": components,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
