"""Render analyses as terminal tables with rich.

rich sizes the tables to the terminal, shortens long cells and drops colour when the output is
not a terminal, so the same report reads well in a shell and in a CI log.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from edgetrim.analyze.device import DeviceSet
from edgetrim.analyze.policy import RuleOutcome
from edgetrim.analyze.result import Category, ImageAnalysis

_CATEGORY_STYLE = {
    Category.IN_USE: "green",
    Category.OVERWRITTEN: "red",
    Category.DELETED: "magenta",
    Category.DUPLICATE: "yellow",
    Category.LIKELY_UNUSED: "cyan",
}
# Below this width, the Layers table leaves out the created by column, whose text would be
# mostly an ellipsis.
_MIN_CREATED_BY_WIDTH = 8


def format_bytes(size: float) -> str:
    """Format a byte count with decimal units as Docker prints them: ``1.2 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def render_image(console: Console, analysis: ImageAnalysis, *, top: int) -> None:
    """Print every section of one image's analysis."""
    names = f" ({', '.join(analysis.names)})" if analysis.names else ""
    console.rule(f"[bold]{analysis.source}[/bold]{names}")
    _summary(console, analysis)
    _layers(console, analysis)
    _hidden(console, analysis, top)
    _duplicates(console, analysis, top)
    _unused(console, analysis, top)
    _packages(console, analysis, top)
    _surface(console, analysis, top)
    for note in analysis.notes:
        console.print(f"note: {note}")


def blob_label(analysis: ImageAnalysis) -> str:
    """Return the label of the layer blobs' stored size, saying whether they are compressed."""
    compressed = sum(1 for layer in analysis.layers if layer.compressed)
    if compressed == 0:
        state = "uncompressed"
    elif compressed == len(analysis.layers):
        state = "compressed"
    else:
        state = f"{compressed} of {len(analysis.layers)} compressed"
    return f"layer blobs as stored ({state})"


def _summary(console: Console, analysis: ImageAnalysis) -> None:
    waste = analysis.waste
    stored = waste.stored_bytes
    table = Table(title="Size and waste", title_justify="left")
    table.add_column("what")
    table.add_column("bytes", justify="right")
    table.add_column("of stored", justify="right")
    table.add_row(blob_label(analysis), format_bytes(analysis.blob_bytes), "")
    table.add_row("uncompressed layer tars", format_bytes(analysis.uncompressed_bytes), "")
    table.add_row("stored file content", format_bytes(stored), _share(stored, stored))
    rows = [
        (Category.IN_USE, waste.in_use_bytes),
        (Category.OVERWRITTEN, waste.overwritten_bytes),
        (Category.DELETED, waste.deleted_bytes),
        (Category.DUPLICATE, waste.duplicate_bytes),
        (Category.LIKELY_UNUSED, waste.likely_unused_bytes),
    ]
    for category, size in rows:
        style = _CATEGORY_STYLE[category]
        label = category.value.replace("_", " ")
        table.add_row(f"  [{style}]{label}[/{style}]", format_bytes(size), _share(size, stored))
    for kind, size in waste.likely_unused_by_kind.items():
        if size:
            table.add_row(f"    {kind.replace('_', ' ')}", format_bytes(size), _share(size, stored))
    table.add_row(
        "[bold]wasted[/bold] (overwritten + deleted + duplicate)",
        format_bytes(waste.wasted_bytes),
        _share(waste.wasted_bytes, stored),
    )
    table.add_row("[bold]efficiency[/bold] (1 - wasted / stored)", f"{waste.efficiency:.4f}", "")
    console.print(table)


def _layers(console: Console, analysis: ImageAnalysis) -> None:
    """Print one row per layer, with every number in full and the history entry cut to fit.

    The numbers stay whole in any output at least as wide as their columns: about 64
    columns, or 77 with the compressed column. That column appears only when some layers
    are compressed and others are not, because the summary's blob label already states a
    shared compression.
    """
    compressed = {layer.compressed for layer in analysis.layers}
    headers = ["#", "blob", "uncompressed", "files", "content", "wasted"]
    if len(compressed) > 1:
        headers.insert(2, "compressed")
    rows: list[list[str]] = []
    commands: list[str] = []
    for layer in analysis.layers:
        counts = layer.bytes_by_category
        wasted = counts["overwritten"] + counts["deleted"] + counts["duplicate"]
        row = [
            str(layer.index),
            format_bytes(layer.blob_bytes),
            format_bytes(layer.uncompressed_bytes),
            f"{layer.files:,}",
            format_bytes(layer.content_bytes),
            format_bytes(wasted),
        ]
        if len(compressed) > 1:
            row.insert(2, "yes" if layer.compressed else "no")
        rows.append(row)
        commands.append(" ".join(layer.created_by.split()) or "-")

    widths = [
        max(cell_len(text) for text in [header, *(row[index] for row in rows)])
        for index, header in enumerate(headers)
    ]
    room = console.width - _table_width(widths + [0])
    table = Table(title="Layers", title_justify="left")
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, justify="right", no_wrap=True, min_width=width)
    if room >= _MIN_CREATED_BY_WIDTH:
        table.add_column("created by", overflow="ellipsis", no_wrap=True, max_width=room)
        for row, command in zip(rows, commands, strict=True):
            table.add_row(*row, command)
    else:
        for row in rows:
            table.add_row(*row)
    console.print(table)
    if room < _MIN_CREATED_BY_WIDTH:
        needed = console.width - room + _MIN_CREATED_BY_WIDTH
        console.print(
            f"note: the Layers table leaves out created by, which needs {needed} columns and "
            f"the output has {console.width}; --json lists each layer's created_by"
        )


def _table_width(widths: list[int]) -> int:
    """Return the width of a rich Table with the default box and padding, from its columns'."""
    return sum(widths) + 2 * len(widths) + len(widths) + 1


def _hidden(console: Console, analysis: ImageAnalysis, top: int) -> None:
    hidden = analysis.copies_in(Category.OVERWRITTEN) + analysis.copies_in(Category.DELETED)
    if not hidden:
        return
    hidden.sort(key=lambda copy: (-copy.size, copy.path))
    table = Table(title=f"Hidden copies (largest {top})", title_justify="left")
    table.add_column("size", justify="right")
    table.add_column("category")
    table.add_column("layer", justify="right")
    table.add_column("hidden by layer", justify="right")
    table.add_column("path", overflow="fold")
    for copy in hidden[:top]:
        style = _CATEGORY_STYLE[copy.category]
        table.add_row(
            format_bytes(copy.size),
            f"[{style}]{copy.category.value}[/{style}]",
            str(copy.layer),
            str(copy.hidden_in),
            copy.path,
        )
    console.print(table)


def _duplicates(console: Console, analysis: ImageAnalysis, top: int) -> None:
    if not analysis.duplicates:
        return
    table = Table(title=f"Duplicate content (largest {top})", title_justify="left")
    table.add_column("wasted", justify="right")
    table.add_column("copies", justify="right")
    table.add_column("kept")
    table.add_column("duplicates", overflow="fold")
    for group in analysis.duplicates[:top]:
        shown = ", ".join(group.duplicates[:3])
        if len(group.duplicates) > 3:
            shown += f", and {len(group.duplicates) - 3} more"
        table.add_row(
            format_bytes(group.wasted_bytes), str(len(group.duplicates) + 1), group.kept, shown
        )
    console.print(table)


def _unused(console: Console, analysis: ImageAnalysis, top: int) -> None:
    files = analysis.copies_in(Category.LIKELY_UNUSED)
    if not files:
        return
    table = Table(title=f"Likely unused at run time (largest {top})", title_justify="left")
    table.add_column("size", justify="right")
    table.add_column("kind")
    table.add_column("package")
    table.add_column("path", overflow="fold")
    for copy in files[:top]:
        table.add_row(format_bytes(copy.size), copy.kind, copy.package or "-", copy.paths[0])
    console.print(table)


def _packages(console: Console, analysis: ImageAnalysis, top: int) -> None:
    summary = analysis.packages
    if summary.database is None:
        return
    total = sum(package.bytes for package in summary.packages)
    toolchain = summary.toolchain
    console.print(
        f"{len(summary.packages)} {summary.database} packages own {format_bytes(total)}; "
        f"{len(toolchain)} toolchain packages own "
        f"{format_bytes(sum(package.bytes for package in toolchain))}"
    )
    sections = [(f"Largest packages (top {top})", summary.packages[:top])]
    if len(toolchain) > top:
        sections.append((f"Toolchain packages (top {top} of {len(toolchain)})", toolchain[:top]))
    else:
        sections.append(("Toolchain packages", toolchain))
    for title, packages in sections:
        if not packages:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("package")
        table.add_column("version")
        table.add_column("files", justify="right")
        table.add_column("bytes", justify="right")
        table.add_column("toolchain")
        for package in packages:
            table.add_row(
                package.name,
                package.version,
                f"{package.files:,}",
                format_bytes(package.bytes),
                "yes" if package.toolchain else "",
            )
        console.print(table)


def _surface(console: Console, analysis: ImageAnalysis, top: int) -> None:
    surface = analysis.surface
    table = Table(title="Attack surface", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("examples", overflow="fold")
    root = {True: "yes", False: "no", None: "unknown"}[surface.runs_as_root]
    table.add_row("runs as root", root, f"User={surface.user!r}")
    rows = [
        ("shells", surface.shells),
        ("package managers", surface.package_managers),
        ("setuid files", [item.path for item in surface.setuid]),
        ("setgid files", [item.path for item in surface.setgid]),
        ("world-writable dirs without sticky bit", [i.path for i in surface.world_writable_dirs]),
        ("ELF executables", [item.path for item in surface.elf_executables]),
    ]
    for label, paths in rows:
        shown = ", ".join(paths[:top])
        if len(paths) > top:
            shown += f", and {len(paths) - top} more"
        table.add_row(label, str(len(paths)), shown)
    console.print(table)


def render_device_set(console: Console, device: DeviceSet) -> None:
    """Print the sizes of a set of images stored on one device."""
    console.rule("[bold]Device set[/bold]")
    table = Table(title=f"{len(device.images)} images on one device", title_justify="left")
    table.add_column("what")
    table.add_column("bytes", justify="right")
    table.add_row("total (each image alone)", format_bytes(device.total_bytes))
    table.add_row(
        f"on the device today ({device.unique_layers} of {device.layers} layers by chain ID)",
        format_bytes(device.device_bytes),
    )
    table.add_row(
        f"identical files across images ({device.identical_files:,} files)",
        format_bytes(device.identical_bytes),
    )
    table.add_row(
        "lower bound (identical files stored once)", format_bytes(device.lower_bound_bytes)
    )
    table.add_row("possible saving", format_bytes(device.saving_bytes))
    console.print(table)


def render_policy(console: Console, outcomes: list[RuleOutcome]) -> None:
    """Print each rule's verdict for each image."""
    for outcome in outcomes:
        verdict = "[red]FAIL[/red]" if outcome.failed else "[green]pass[/green]"
        console.print(
            f"{verdict} {outcome.rule.text}  ({outcome.source}: {outcome.rule.metric} = "
            f"{_format_value(outcome.value, outcome.rule.metric)})"
        )


def _format_value(value: float, metric: str) -> str:
    if metric.endswith("_bytes"):
        return f"{value:,.0f} bytes"
    return f"{value:g}"
