"""Compare the probe results of the minimized image with those of the original."""

from __future__ import annotations

import difflib

from edgetrim.trace.probes import ProbeAnswer

MAX_DIFF_LINES = 40


def compare_answers(expected: list[ProbeAnswer], actual: list[ProbeAnswer]) -> list[str]:
    """Return one readable block per probe whose result differs; empty when all match."""
    differences = []
    for before, after in zip(expected, actual, strict=True):
        if before.status == after.status and before.body == after.body:
            continue
        kind = before.status_name
        output = "body" if kind == "status" else "stdout"
        lines = [f"{before.probe}:"]
        if before.status != after.status:
            lines.append(f"  {kind}: original {before.status}, minimized {after.status}")
        if before.body != after.body:
            lines.append(f"  {output} differs (- original, + minimized):")
            diff = difflib.unified_diff(
                before.body.decode("utf-8", "replace").splitlines(),
                after.body.decode("utf-8", "replace").splitlines(),
                lineterm="",
                n=1,
            )
            body_lines = list(diff)[2:]
            lines += [f"    {line}" for line in body_lines[:MAX_DIFF_LINES]]
            if len(body_lines) > MAX_DIFF_LINES:
                lines.append(f"    ... {len(body_lines) - MAX_DIFF_LINES} more lines")
        differences.append("\n".join(lines))
    return differences
