"""``edgetrim analyze SOURCE...``: report where the bytes of images go, and gate CI on rules."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from edgetrim.analyze import analyze_device_set, analyze_image
from edgetrim.analyze.policy import check, evaluate, load_rules, parse_rule
from edgetrim.cli.options import platform_option, registry_options, registry_settings
from edgetrim.errors import EdgetrimError
from edgetrim.image.model import Platform
from edgetrim.transports import open_image
from edgetrim.transports.reference import Transport, check_output_path, check_source

_PIPE_WIDTH = 120


@click.command(
    "analyze",
    short_help="Analyze each SOURCE: layers, waste, packages and attack surface.",
)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (schema edgetrim-analyze/v1) instead of tables.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML page with a treemap and a layer chart.",
)
@click.option(
    "--fail-if",
    "fail_if",
    multiple=True,
    metavar="RULE",
    help="Exit 1 if RULE is true for an image, e.g. 'wasted_bytes > 20MB', "
    "'efficiency < 0.9', 'likely_unused_bytes > 50%'. Repeatable.",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file with fail-if = [RULE, ...], added to --fail-if.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rows in each list of files and packages.",
)
@platform_option("analyze")
@registry_options
def analyze_command(
    sources: tuple[str, ...],
    as_json: bool,
    html_path: Path | None,
    fail_if: tuple[str, ...],
    rules_path: Path | None,
    top: int,
    platform: Platform | None,
    ca_cert: Path | None,
    insecure: bool,
) -> None:
    """Analyze each SOURCE: layers, waste, packages and attack surface.

    SOURCE is an image reference: docker-archive:PATH, oci:DIR[:REF],
    oci-archive:FILE[:REF], docker://HOST/REPO[:TAG|@DIGEST] or docker-daemon:NAME:TAG.
    With two or more, also report what they take together on one device. Exit status: 0,
    1 if a rule failed, 2 on an error.
    """
    # Check every reference, local path, rule and the output path before reading any image,
    # so that a typo fails at once and not after minutes of reading the images before it.
    references = [check_source(source) for source in sources]
    if html_path is not None:
        check_output_path(html_path, f"--html {html_path}")
    rules = [parse_rule(text) for text in fail_if]
    if rules_path is not None:
        rules += load_rules(rules_path)
    registry = None
    if any(reference.transport is Transport.DOCKER for reference in references):
        registry = registry_settings(ca_cert, insecure)

    analyses = []
    with _without_cyclic_gc():
        for source in sources:
            with open_image(source, platform=platform, registry=registry) as image:
                analyses.append(analyze_image(image, source=source))
    device = analyze_device_set(analyses) if len(analyses) > 1 else None
    outcomes = evaluate(rules, analyses) if rules else None

    # Each report imports its renderer only when it is requested: rich alone takes about 0.03 s.
    if html_path is not None:
        from edgetrim.analyze.report_html import render_html

        _write_text(html_path, render_html(analyses, device))
    if as_json:
        from edgetrim.analyze.report_json import build_document

        document = build_document(analyses, device, outcomes, top=top)
        click.echo(json.dumps(document, indent=2))
    else:
        from rich.console import Console

        from edgetrim.analyze.report_text import render_device_set, render_image, render_policy

        console = Console()
        if not console.is_terminal:
            # rich assumes 80 columns without a terminal; CI logs and files take wider lines.
            console.width = _PIPE_WIDTH
        for analysis in analyses:
            render_image(console, analysis, top=top)
        if device is not None:
            render_device_set(console, device)
        if outcomes:
            render_policy(console, outcomes)

    check(outcomes or [])


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector, which reference counting makes redundant here.

    An analysis keeps several objects per file until the report is written, and makes
    almost no reference cycles. On the python-http example the collector otherwise ran
    about 290 times and took about 0.05 s of CPU time on the thread that parses the layers.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, so a failed run leaves no half page."""
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(
            # A file name that is not UTF-8 shows as a backslash escape instead of failing.
            "w",
            encoding="utf-8",
            errors="backslashreplace",
            dir=path.parent,
            prefix=f".{path.name}.",
            delete=False,
        ) as handle:
            temporary = Path(handle.name)
            handle.write(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise EdgetrimError(
            f"{path}: cannot write the HTML report ({exc.strerror}); check that the folder "
            "exists and is writable"
        ) from None
