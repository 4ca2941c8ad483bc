"""Analyze one image: per-layer sizes, waste by category, packages and attack surface.

:func:`analyze_image` reads each layer once and returns an :class:`ImageAnalysis`; it prints
nothing and decides nothing. Reports and CI rules take the result from there.

Every stored copy of file content gets one category, checked in this order: hidden by a later
layer (overwritten or deleted), a duplicate of another visible file, likely unused, in use.
Among visible files with the same content, the one kept is the first that is not likely
unused, then the lowest layer, then the first path, so removing the duplicates leaves the most
useful copy.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict

from edgetrim.analyze import packages as dpkg
from edgetrim.analyze import unused
from edgetrim.analyze.result import (
    Category,
    CopyReport,
    DuplicateGroup,
    FinalFile,
    ImageAnalysis,
    LayerReport,
    PackageReport,
    PackageSummary,
    WasteSummary,
)
from edgetrim.analyze.scan import ScanResult, scan_image
from edgetrim.analyze.stack import Hidden, LayerStack, copies_in_use
from edgetrim.analyze.surface import find_surface
from edgetrim.fs.entry import FileType
from edgetrim.image.digest import Digest
from edgetrim.image.model import Image

log = logging.getLogger(__name__)


def chain_ids(diff_ids: list[Digest]) -> list[str]:
    """Return the chain ID of each layer: the identity of the layer together with those below it.

    ChainID(L0) = DiffID(L0); ChainID(L0..Ln) = sha256 of ``ChainID(L0..Ln-1) + " " +
    DiffID(Ln)``, as the OCI image spec defines it. Docker and containerd store one unpacked
    snapshot per chain ID, so one layer on two different bases is stored twice.
    """
    found: list[str] = []
    for diff_id in diff_ids:
        if not found:
            found.append(str(diff_id))
        else:
            text = f"{found[-1]} {diff_id}"
            found.append("sha256:" + hashlib.sha256(text.encode()).hexdigest())
    return found


def layer_history(history: list[dict], layer_count: int) -> tuple[list[dict], str | None]:
    """Align the config's history with the layers, skipping entries marked ``empty_layer``.

    Returns one entry per layer (empty dicts where none is known) and a note when the history
    does not list exactly one non-empty entry per layer.
    """
    entries = [item for item in history if isinstance(item, dict) and not item.get("empty_layer")]
    if len(entries) == layer_count:
        return entries, None
    note = (
        f"the config history lists {len(entries)} layer-creating steps for {layer_count} "
        "layers, so the steps are not shown"
    )
    return [{} for _ in range(layer_count)], note


def analyze_image(image: Image, *, source: str = "") -> ImageAnalysis:
    """Read every layer of ``image`` once and return what its bytes are and where they go.

    ``source`` is the reference the image was opened from, for the report. Raises
    ImageFormatError or UnsafeLayerError when a layer is corrupt or hostile.
    """
    # The block ends with the last digest checks, so nothing is returned unverified.
    with scan_image(image) as scan:
        stack = scan.stack
        notes: list[str] = []
        visible = copies_in_use(stack)

        packages, owner = _read_packages(scan, visible, notes)
        languages = unused.configured_languages(image.config.env)
        kinds = _likely_unused(visible, owner, languages)
        history, history_note = layer_history(image.config.history, len(image.layers))
        if history_note:
            notes.append(history_note)

        # The steps above need no digests, so they ran while workers were still hashing.
        scan.wait_for_copies()
        duplicates, duplicate_copies = _duplicates(stack, visible, kinds)
        copies = _copy_reports(stack, visible, kinds, duplicate_copies, owner)
        layers = _layer_reports(image, scan, history, copies)
        waste = _summary(copies)

        passwd_copy = stack.copy_of.get("/etc/passwd")
        passwd = scan.kept.get(passwd_copy) if passwd_copy is not None else None
        surface = find_surface(stack, image.config.user, passwd)
        if surface.runs_as_root is None:
            notes.append(
                f"the image runs as user {image.config.user!r}, which /etc/passwd does not list"
            )
        return ImageAnalysis(
            source=source or image.source,
            names=list(image.names),
            config_digest=str(image.config.digest),
            platform=str(image.config.platform),
            blob_bytes=sum(layer.size for layer in image.layers),
            uncompressed_bytes=sum(stats.tar_bytes for stats in scan.layers),
            final_entries=len(stack.entries),
            waste=waste,
            layers=layers,
            duplicates=duplicates,
            packages=packages,
            surface=surface,
            copies=copies,
            final_files=_final_files(stack),
            notes=notes,
        )


def _read_packages(
    scan: ScanResult, visible: dict[int, list[str]], notes: list[str]
) -> tuple[PackageSummary, dict[int, str]]:
    """Parse the final dpkg database and map each visible copy to the package that owns it."""
    stack = scan.stack
    status_copy = stack.copy_of.get(dpkg.STATUS_PATH)
    status = scan.kept.get(status_copy) if status_copy is not None else None
    # NOTE: only dpkg is read; distroless status.d/, apk and rpm databases are not yet.
    if status is None:
        notes.append(
            "no dpkg database (/var/lib/dpkg/status), so files are not attributed to packages"
        )
        return PackageSummary(database=None), {}
    installed = dpkg.parse_status(status.decode("utf-8", "replace"))
    for copy_id, content in scan.kept.items():
        name = dpkg.list_file_package(stack.copies[copy_id].path)
        if name in installed and copy_id in visible:
            installed[name].paths.extend(dpkg.parse_list(content.decode("utf-8", "replace")))

    owner: dict[int, str] = {}
    reports: list[PackageReport] = []
    entries = stack.entries
    copy_of = stack.copy_of
    for package in installed.values():
        owned: set[int] = set()
        files = 0
        for listed in package.paths:
            path = stack.canonical(listed)
            if path is None:
                continue
            entry = entries.get(path)
            if entry is None or entry.type is FileType.DIRECTORY:
                continue
            # dpkg lists directories too; /bin is a symlink to a directory on merged-/usr.
            if entry.type is FileType.SYMLINK and stack.resolve_directory(path) is not None:
                continue
            files += 1
            copy = copy_of.get(path)
            if copy is not None:
                owned.add(copy)
                owner.setdefault(copy, package.name)
        reports.append(
            PackageReport(
                name=package.name,
                version=package.version,
                architecture=package.architecture,
                installed_size_kib=package.installed_size_kib,
                files=files,
                bytes=sum(stack.copies[copy].size for copy in owned),
                toolchain=unused.is_toolchain_package(package.name),
            )
        )
    reports.sort(key=lambda report: (-report.bytes, report.name))
    return PackageSummary(database="dpkg", packages=reports), owner


def _likely_unused(
    visible: dict[int, list[str]], owner: dict[int, str], languages: set[str]
) -> dict[int, str]:
    """Map each visible copy that every one of its paths marks as likely unused to its kind."""
    kinds: dict[int, str] = {}
    classify = unused.classify
    for copy, paths in visible.items():
        package = owner.get(copy)
        kind = classify(paths[0], package, languages)
        if kind is None:
            continue
        # A hardlinked inode is likely unused only if every one of its paths is.
        if all(classify(path, package, languages) for path in paths[1:]):
            kinds[copy] = kind
    return kinds


def _duplicates(
    stack: LayerStack, visible: dict[int, list[str]], kinds: dict[int, str]
) -> tuple[list[DuplicateGroup], set[int]]:
    by_digest: dict[str, list[int]] = defaultdict(list)
    for copy in visible:
        stored = stack.copies[copy]
        if stored.size > 0:
            by_digest[stored.digest].append(copy)
    groups: list[DuplicateGroup] = []
    duplicate_copies: set[int] = set()
    for digest, members in by_digest.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda c: (c in kinds, stack.copies[c].layer, visible[c][0]))
        kept, *others = members
        duplicate_copies.update(others)
        groups.append(
            DuplicateGroup(
                digest=digest,
                size=stack.copies[kept].size,
                kept=visible[kept][0],
                duplicates=sorted(visible[c][0] for c in others),
            )
        )
    groups.sort(key=lambda group: (-group.wasted_bytes, group.kept))
    return groups, duplicate_copies


def _copy_reports(
    stack: LayerStack,
    visible: dict[int, list[str]],
    kinds: dict[int, str],
    duplicates: set[int],
    owner: dict[int, str],
) -> list[CopyReport]:
    reports: list[CopyReport] = []
    for copy_id, stored in enumerate(stack.copies):
        kind = ""
        if stored.hidden is Hidden.OVERWRITTEN:
            category = Category.OVERWRITTEN
        elif stored.hidden is Hidden.DELETED:
            category = Category.DELETED
        elif copy_id in duplicates:
            category = Category.DUPLICATE
        elif copy_id in kinds:
            category = Category.LIKELY_UNUSED
            kind = kinds[copy_id]
        else:
            category = Category.IN_USE
        # Positional arguments, in the order of CopyReport's fields, are quicker to pass.
        reports.append(
            CopyReport(
                stored.path,
                stored.layer,
                stored.size,
                stored.digest,
                category,
                visible.get(copy_id, []),
                kind,
                stored.hidden_in,
                owner.get(copy_id, ""),
                stored.elf_type,
            )
        )
    return reports


def _summary(copies: list[CopyReport]) -> WasteSummary:
    totals = dict.fromkeys(Category, 0)
    by_kind = dict.fromkeys(unused.KINDS, 0)
    for copy in copies:
        totals[copy.category] += copy.size
        if copy.kind:
            by_kind[copy.kind] += copy.size
    return WasteSummary(
        stored_bytes=sum(totals.values()),
        in_use_bytes=totals[Category.IN_USE],
        overwritten_bytes=totals[Category.OVERWRITTEN],
        deleted_bytes=totals[Category.DELETED],
        duplicate_bytes=totals[Category.DUPLICATE],
        likely_unused_bytes=totals[Category.LIKELY_UNUSED],
        likely_unused_by_kind=by_kind,
    )


def _layer_reports(
    image: Image, scan: ScanResult, history: list[dict], copies: list[CopyReport]
) -> list[LayerReport]:
    by_layer = [{category.value: 0 for category in Category} for _ in image.layers]
    for copy in copies:
        by_layer[copy.layer][copy.category.value] += copy.size
    chains = chain_ids(image.config.diff_ids)
    reports: list[LayerReport] = []
    for index, (layer, stats) in enumerate(zip(image.layers, scan.layers, strict=True)):
        reports.append(
            LayerReport(
                index=index,
                digest=str(layer.digest),
                diff_id=str(layer.diff_id),
                chain_id=chains[index],
                blob_bytes=layer.size,
                # Both digests were verified while the layer was read, and a blob is its
                # uncompressed tar exactly when the two are equal.
                compressed=layer.digest != layer.diff_id,
                uncompressed_bytes=stats.tar_bytes,
                content_bytes=stats.content_bytes,
                entries=stats.entries,
                files=stats.files,
                directories=stats.directories,
                whiteouts=stats.whiteouts,
                created_by=str(history[index].get("created_by") or ""),
                comment=str(history[index].get("comment") or ""),
                bytes_by_category=by_layer[index],
            )
        )
    return reports


def _final_files(stack: LayerStack) -> list[FinalFile]:
    files: list[FinalFile] = []
    entries = stack.entries
    copies = stack.copies
    for path, copy in sorted(stack.copy_of.items()):
        entry = entries[path]
        stored = copies[copy]
        files.append(
            FinalFile(path, stored.size, stored.digest, entry.mode, entry.uid, entry.gid, copy)
        )
    return files
