"""Lay out an image's stored content as a squarified treemap of rectangles.

Every stored copy is a leaf under its path, hidden copies included, so the map's area is the
image's stored content bytes and every category shows where it sits. The squarified layout
(Bruls, Huizing and van Wijk, "Squarified Treemaps", 2000) keeps rectangles close to square.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgetrim.analyze.result import Category, CopyReport

# Rectangles thinner than this many pixels are not split further.
MIN_SPLIT = 6.0
# Height in pixels of the label strip at the top of a directory's rectangle.
LABEL_HEIGHT = 13.0
# Children smaller than this many square pixels are merged into one rectangle.
MIN_AREA = 16.0


@dataclass
class Node:
    """A directory or a stored copy, with its content bytes per category."""

    name: str
    path: str
    sizes: dict[Category, int] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(self.sizes.values())


@dataclass(frozen=True)
class Box:
    """One rectangle to draw: a whole node, or one category's slice of a node too small to split."""

    x: float
    y: float
    width: float
    height: float
    label: str
    title: str
    category: Category | None
    directory: bool


def build_tree(copies: list[CopyReport]) -> Node:
    """Place each copy with content under its path; hidden copies get their layer in the name."""
    root = Node(name="/", path="/")
    for copy in copies:
        if copy.size == 0:
            continue
        path = copy.paths[0] if copy.paths else copy.path
        parts = [part for part in path.split("/") if part]
        node = root
        node.sizes[copy.category] = node.sizes.get(copy.category, 0) + copy.size
        for depth, part in enumerate(parts):
            leaf = depth == len(parts) - 1
            name = part
            if leaf and copy.category in (Category.OVERWRITTEN, Category.DELETED):
                name = f"{part} (layer {copy.layer}, {copy.category.value})"
            if name not in node.children:
                node.children[name] = Node(name=name, path="/" + "/".join(parts[: depth + 1]))
            node = node.children[name]
            node.sizes[copy.category] = node.sizes.get(copy.category, 0) + copy.size
    return root


def layout(root: Node, width: float, height: float) -> list[Box]:
    """Return the rectangles of ``root`` drawn in a ``width`` x ``height`` area."""
    boxes: list[Box] = []
    if root.size:
        _place(root, 0.0, 0.0, width, height, boxes, top=True)
    return boxes


def _place(
    node: Node, x: float, y: float, w: float, h: float, boxes: list[Box], *, top: bool = False
) -> None:
    splittable = node.children and w >= MIN_SPLIT * 2 and h >= LABEL_HEIGHT + MIN_SPLIT * 2
    if not splittable:
        _slices(node, x, y, w, h, boxes)
        return
    if not top:
        boxes.append(Box(x, y, w, h, node.name, _title(node), None, directory=True))
        y, h = y + LABEL_HEIGHT, h - LABEL_HEIGHT
        x, w = x + 1, w - 2
        h -= 1
    children = _merge_small(node, w * h)
    rects = squarify([child.size for child in children], x, y, w, h)
    for child, (cx, cy, cw, ch) in zip(children, rects, strict=True):
        _place(child, cx, cy, cw, ch, boxes)


def _merge_small(node: Node, area: float) -> list[Node]:
    """Return the children largest first, with those too small to see merged into one node."""
    children = sorted(node.children.values(), key=lambda child: -child.size)
    scale = area / node.size
    visible = [child for child in children if child.size * scale >= MIN_AREA]
    small = children[len(visible) :]
    if len(small) > 1:
        merged = Node(name=f"({len(small)} smaller entries)", path=f"{node.path.rstrip('/')}/...")
        for child in small:
            for category, size in child.sizes.items():
                merged.sizes[category] = merged.sizes.get(category, 0) + size
        return [*visible, merged]
    return children


def _slices(node: Node, x: float, y: float, w: float, h: float, boxes: list[Box]) -> None:
    """Draw a node that is not split further as one band per category, largest first."""
    total = node.size
    offset = 0.0
    for category, size in sorted(node.sizes.items(), key=lambda item: -item[1]):
        if not size:
            continue
        share = size / total
        if w >= h:
            box = Box(x + offset, y, w * share, h, node.name, _title(node), category, False)
            offset += w * share
        else:
            box = Box(x, y + offset, w, h * share, node.name, _title(node), category, False)
            offset += h * share
        boxes.append(box)


def _title(node: Node) -> str:
    parts = [f"{node.path}: {node.size:,} bytes"]
    for category, size in sorted(node.sizes.items(), key=lambda item: -item[1]):
        if size:
            parts.append(f"{category.value} {size:,}")
    return "; ".join(parts)


def squarify(values: list[int], x: float, y: float, w: float, h: float) -> list[tuple[float, ...]]:
    """Split the rectangle into one rectangle per value (sorted largest first), area ~ value."""
    total = sum(values)
    if total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0) for _ in values]
    scale = w * h / total
    areas = [value * scale for value in values]
    rects: list[tuple[float, ...]] = []
    index = 0
    while index < len(areas):
        short = min(w, h) or 1e-9
        row = [areas[index]]
        index += 1
        while index < len(areas) and _worst(row + [areas[index]], short) <= _worst(row, short):
            row.append(areas[index])
            index += 1
        row_area = sum(row)
        if w >= h:
            column = row_area / h if h else 0.0
            offset = y
            for area in row:
                part = area / column if column else 0.0
                rects.append((x, offset, column, part))
                offset += part
            x, w = x + column, w - column
        else:
            band = row_area / w if w else 0.0
            offset = x
            for area in row:
                part = area / band if band else 0.0
                rects.append((offset, y, part, band))
                offset += part
            y, h = y + band, h - band
    return rects


def _worst(row: list[float], short: float) -> float:
    """Return the worst aspect ratio in a row laid along a side of length ``short``."""
    total = sum(row)
    smallest = min(row)
    if total <= 0 or smallest <= 0:
        return float("inf")
    return max(
        max(row) * short * short / (total * total), total * total / (short * short * smallest)
    )
