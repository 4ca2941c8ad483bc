"""Read an image's dpkg database the way a vulnerability scanner does, and check it against files.

Vulnerability scanners take the installed packages from /var/lib/dpkg/status, and tools that map
files to packages read the per-package .list files. A minimized image must therefore list only
packages that still have files in it, and every package whose files remain.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from edgetrim.fs.safetar import iter_contents
from edgetrim.fs.tree import FileTree
from edgetrim.image.model import Image

STATUS = "/var/lib/dpkg/status"
INFO = "/var/lib/dpkg/info"


@dataclass(frozen=True)
class ListedPackage:
    """One paragraph of the status file with the files its .list names."""

    name: str
    paragraph: str
    files: tuple[str, ...]


def is_file(tree: FileTree, path: str) -> bool:
    """Tell whether ``path`` is a non-directory entry, resolving symlinked parent directories.

    A symlink to a directory counts as a directory: dpkg lists /bin as a directory, and with
    merged /usr that is a link to usr/bin.
    """
    resolved = tree.resolve(path, follow_last=False).path
    entry = tree.get(resolved) if resolved else None
    if entry is None or entry.is_dir:
        return False
    target = tree.resolve(resolved).path
    target_entry = tree.get(target) if target else None
    return target_entry is None or not target_entry.is_dir


def read_members(image: Image, tree: FileTree, paths: list[str]) -> dict[str, str]:
    """Return the text of several regular files of an image, reading each layer at most once."""
    needed: dict[int, dict[str, list[str]]] = {}
    for path in paths:
        source = tree.content_source(path)
        assert source is not None, f"{path} has no content in the image"
        needed.setdefault(source.layer, {}).setdefault(source.path, []).append(path)
    texts: dict[str, str] = {}
    members = {layer: set(by_member) for layer, by_member in needed.items()}
    for layer, member in iter_contents(image, members):
        content = io.BytesIO()
        member.read_content(content)
        for path in needed[layer][member.entry.path]:
            texts[path] = content.getvalue().decode()
    missing = sorted(set(paths) - set(texts))
    assert not missing, f"not found in their layers: {missing}"
    return texts


def listed_packages(image: Image, tree: FileTree) -> dict[str, ListedPackage]:
    """Return the installed packages of the status file by name, each with its listed files."""
    status = read_members(image, tree, [STATUS])[STATUS]
    paragraphs = {}
    for paragraph in filter(None, status.split("\n\n")):
        fields = dict(
            line.split(": ", 1)
            for line in paragraph.splitlines()
            if ": " in line and line[0] != " "
        )
        name = fields["Package"]
        candidates = [f"{INFO}/{name}:{fields.get('Architecture', '')}.list", f"{INFO}/{name}.list"]
        list_path = next((path for path in candidates if path in tree), None)
        paragraphs[name] = (paragraph, list_path)
    lists = read_members(image, tree, [path for _, path in paragraphs.values() if path])
    return {
        name: ListedPackage(
            name, paragraph, tuple(line for line in lists.get(path or "", "").splitlines() if line)
        )
        for name, (paragraph, path) in paragraphs.items()
    }


def packages_without_files(image: Image, tree: FileTree) -> list[str]:
    """Return the listed packages with no file present: what a scanner would report wrongly."""
    return sorted(
        package.name
        for package in listed_packages(image, tree).values()
        if not any(is_file(tree, path) for path in package.files)
    )


def owners(image: Image, tree: FileTree) -> dict[str, str]:
    """Map the resolved path of every file the dpkg database lists to the package that lists it."""
    owned = {}
    for package in listed_packages(image, tree).values():
        for path in package.files:
            resolved = tree.resolve(path, follow_last=False).path
            if resolved and is_file(tree, resolved):
                owned[resolved] = package.name
    return owned


def files_of_unlisted_packages(
    original: tuple[Image, FileTree], minimized: tuple[Image, FileTree]
) -> dict[str, list[str]]:
    """Return, by package, files that are still present but whose package the status file dropped.

    A scanner does not see these files, so a vulnerable library could hide among them.
    """
    before = owners(*original)
    listed = set(listed_packages(*minimized))
    hidden: dict[str, list[str]] = {}
    tree = minimized[1]
    for path in tree:
        package = before.get(path)
        if package is not None and package not in listed and is_file(tree, path):
            hidden.setdefault(package, []).append(path)
    return hidden
