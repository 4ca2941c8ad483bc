"""Read the dpkg database of an image: installed packages and the files each one owns.

dpkg records installed packages in ``/var/lib/dpkg/status`` (RFC 822 style paragraphs) and the
paths each package installed in ``/var/lib/dpkg/info/PACKAGE[:ARCH].list``, one path per line,
as the package ships them. Those paths may go through a symlinked directory (``/bin`` is
``usr/bin`` on merged-/usr systems), so callers resolve them against the final filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STATUS_PATH = "/var/lib/dpkg/status"
INFO_DIR = "/var/lib/dpkg/info/"


@dataclass
class DpkgPackage:
    """One installed package as the dpkg status file records it.

    ``installed_size_kib`` is the ``Installed-Size`` field, the package's own estimate in KiB.
    ``paths`` are the paths its ``.list`` file names, directories included.
    """

    name: str
    version: str = ""
    architecture: str = ""
    installed_size_kib: int = 0
    paths: list[str] = field(default_factory=list)


def parse_status(text: str) -> dict[str, DpkgPackage]:
    """Parse a dpkg status file and return the installed packages by name.

    Only paragraphs whose ``Status`` ends in ``installed`` count: dpkg keeps removed packages
    whose configuration files remain as ``deinstall ok config-files``.
    """
    packages: dict[str, DpkgPackage] = {}
    for paragraph in text.split("\n\n"):
        fields = _fields(paragraph)
        name = fields.get("Package")
        if not name or not fields.get("Status", "").endswith(" installed"):
            continue
        size = fields.get("Installed-Size", "0").strip()
        packages[name] = DpkgPackage(
            name=name,
            version=fields.get("Version", ""),
            architecture=fields.get("Architecture", ""),
            installed_size_kib=int(size) if size.isdigit() else 0,
        )
    return packages


def _fields(paragraph: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in paragraph.splitlines():
        # Continuation lines start with white space; only the first line of a field matters.
        if not line or line[0] in " \t" or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key] = value.strip()
    return fields


def list_file_package(path: str) -> str | None:
    """Return the package name that ``/var/lib/dpkg/info/NAME[:ARCH].list`` belongs to."""
    if not path.startswith(INFO_DIR) or not path.endswith(".list"):
        return None
    return path[len(INFO_DIR) : -len(".list")].split(":", 1)[0]


def parse_list(text: str) -> list[str]:
    """Return the absolute paths of a ``.list`` file; dpkg writes ``/.`` for the root."""
    return [line for line in text.splitlines() if line.startswith("/") and line != "/."]
