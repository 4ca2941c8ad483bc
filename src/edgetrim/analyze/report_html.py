"""Render analyses as one self-contained HTML page: a treemap and a layer chart per image.

The page has no script and loads nothing: the charts are inline SVG computed here, the style
is inline CSS, and each rectangle's ``<title>`` shows its path and bytes on hover.
"""

from __future__ import annotations

from html import escape

from edgetrim import __version__
from edgetrim.analyze.device import DeviceSet
from edgetrim.analyze.report_text import blob_label, format_bytes
from edgetrim.analyze.result import Category, ImageAnalysis
from edgetrim.analyze.treemap import Box, build_tree, layout

COLORS = {
    Category.IN_USE: "#43a047",
    Category.OVERWRITTEN: "#e53935",
    Category.DELETED: "#8e24aa",
    Category.DUPLICATE: "#fdd835",
    Category.LIKELY_UNUSED: "#29b6f6",
}
TREEMAP_WIDTH = 1200
TREEMAP_HEIGHT = 700
CHART_WIDTH = 1200
BAR_HEIGHT = 22

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { padding: 2px 10px; border-bottom: 1px solid #e0e0e0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 16px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: -1px; }
svg text { font: 11px sans-serif; pointer-events: none; }
"""


def render_html(analyses: list[ImageAnalysis], device: DeviceSet | None) -> str:
    """Return the whole page for one or more images and their device set."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>edgetrim analyze: {escape(', '.join(a.source for a in analyses))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>edgetrim analyze <small>(edgetrim {escape(__version__)})</small></h1>",
        _legend(),
    ]
    for analysis in analyses:
        parts.append(_image_section(analysis))
    if device is not None:
        parts.append(_device_section(device))
    parts.append("</body></html>")
    return "\n".join(parts)


def _legend() -> str:
    items = "".join(
        f'<span><i style="background:{color}"></i>{category.value.replace("_", " ")}</span>'
        for category, color in COLORS.items()
    )
    return f'<p class="legend">{items}</p>'


def _image_section(analysis: ImageAnalysis) -> str:
    waste = analysis.waste
    stored = waste.stored_bytes
    table = (
        f"<tr><td>{blob_label(analysis)}</td><td class=n>{format_bytes(analysis.blob_bytes)}"
        "</td><td></td></tr>"
    )
    rows = [
        ("stored file content", stored),
        ("in use", waste.in_use_bytes),
        ("overwritten", waste.overwritten_bytes),
        ("deleted", waste.deleted_bytes),
        ("duplicate", waste.duplicate_bytes),
        ("likely unused", waste.likely_unused_bytes),
        ("wasted (overwritten + deleted + duplicate)", waste.wasted_bytes),
    ]
    table += "".join(
        f"<tr><td>{escape(label)}</td><td class=n>{format_bytes(size)}</td>"
        f"<td class=n>{size / stored:.1%}</td></tr>"
        if stored
        else f"<tr><td>{escape(label)}</td><td class=n>{format_bytes(size)}</td><td></td></tr>"
        for label, size in rows
    )
    table += (
        f"<tr><td>efficiency (1 - wasted / stored)</td><td class=n>{waste.efficiency:.4f}</td></tr>"
    )
    names = f" ({escape(', '.join(analysis.names))})" if analysis.names else ""
    return "\n".join(
        [
            f"<h2>{escape(analysis.source)}{names}</h2>",
            f"<table>{table}</table>",
            "<h3>Stored content by path</h3>",
            _treemap_svg(analysis),
            "<h3>Layers: content bytes by category</h3>",
            _layer_chart_svg(analysis),
            _surface_list(analysis),
        ]
    )


def _treemap_svg(analysis: ImageAnalysis) -> str:
    boxes = layout(build_tree(analysis.copies), TREEMAP_WIDTH, TREEMAP_HEIGHT)
    if not boxes:
        return "<p>The image stores no file content.</p>"
    shapes = [_box_svg(box) for box in boxes if box.width * box.height >= 1]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{TREEMAP_WIDTH}" '
        f'height="{TREEMAP_HEIGHT}" role="img" aria-label="treemap">' + "".join(shapes) + "</svg>"
    )


def _box_svg(box: Box) -> str:
    title = f"<title>{escape(box.title)}</title>"
    geometry = f'x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}"'
    if box.directory:
        label = ""
        if box.width > 40:
            text = escape(_fit(box.label, box.width))
            label = f'<text x="{box.x + 3:.1f}" y="{box.y + 10:.1f}">{text}</text>'
        return f'<g><rect {geometry} fill="#eceff1" stroke="#607d8b">{title}</rect>{label}</g>'
    color = COLORS[box.category] if box.category else "#bdbdbd"
    label = ""
    if box.width > 50 and box.height > 14:
        text = escape(_fit(box.label, box.width))
        label = f'<text x="{box.x + 3:.1f}" y="{box.y + 11:.1f}">{text}</text>'
    rect = f'<rect {geometry} fill="{color}" stroke="#fff" stroke-width="0.5">{title}</rect>'
    return f"<g>{rect}{label}</g>"


def _fit(text: str, width: float) -> str:
    limit = max(int(width / 6.5), 1)
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


def _layer_chart_svg(analysis: ImageAnalysis) -> str:
    label_width = 420
    bar_space = CHART_WIDTH - label_width - 90
    largest = max((layer.content_bytes for layer in analysis.layers), default=0) or 1
    height = BAR_HEIGHT * len(analysis.layers) + 4
    shapes: list[str] = []
    for layer in analysis.layers:
        y = layer.index * BAR_HEIGHT + 2
        created = " ".join(layer.created_by.split()) or "(no history entry)"
        label = escape(_fit(f"{layer.index}: {created}", label_width - 8))
        shapes.append(f'<text x="0" y="{y + 14}"><title>{escape(created)}</title>{label}</text>')
        x = float(label_width)
        for category in Category:
            size = layer.bytes_by_category[category.value]
            if not size:
                continue
            width = max(size / largest * bar_space, 1.0)
            tip = f"layer {layer.index} {category.value}: {size:,} bytes"
            shapes.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT - 4}" '
                f'fill="{COLORS[category]}"><title>{escape(tip)}</title></rect>'
            )
            x += width
        shapes.append(
            f'<text x="{x + 6:.1f}" y="{y + 14}">{format_bytes(layer.content_bytes)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
        f'role="img" aria-label="layers">' + "".join(shapes) + "</svg>"
    )


def _surface_list(analysis: ImageAnalysis) -> str:
    surface = analysis.surface
    root = {True: "yes", False: "no", None: "unknown"}[surface.runs_as_root]
    rows = [
        ("runs as root", f"{root} (User={surface.user!r})"),
        ("shells", ", ".join(surface.shells) or "none"),
        ("package managers", ", ".join(surface.package_managers) or "none"),
        ("setuid files", ", ".join(item.path for item in surface.setuid) or "none"),
        ("setgid files", ", ".join(item.path for item in surface.setgid) or "none"),
        (
            "world-writable dirs without sticky bit",
            ", ".join(item.path for item in surface.world_writable_dirs) or "none",
        ),
        ("ELF executables", f"{len(surface.elf_executables):,}"),
    ]
    body = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td></tr>" for a, b in rows)
    return f"<h3>Attack surface</h3><table>{body}</table>"


def _device_section(device: DeviceSet) -> str:
    rows = [
        ("total (each image alone)", device.total_bytes),
        (
            f"on the device today ({device.unique_layers} of {device.layers} layers)",
            device.device_bytes,
        ),
        (f"identical files across images ({device.identical_files:,})", device.identical_bytes),
        ("lower bound (identical files stored once)", device.lower_bound_bytes),
        ("possible saving", device.saving_bytes),
    ]
    body = "".join(
        f"<tr><td>{escape(label)}</td><td class=n>{format_bytes(size)}</td></tr>"
        for label, size in rows
    )
    return f"<h2>Device set: {len(device.images)} images</h2><table>{body}</table>"
