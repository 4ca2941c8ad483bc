"""``edgetrim minimize SOURCE DEST``: trace the image under probes and write a smaller image."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from edgetrim.minimize.pipeline import MinimizeOptions, MinimizeResult, minimize
from edgetrim.trace.probes import HttpProbe
from edgetrim.transports import open_image, write_image


@click.command("minimize")
@click.argument("source")
@click.argument("dest")
@click.option(
    "--http-probe",
    "http_probes",
    multiple=True,
    metavar="PORT[/PATH]",
    help="Wait for PORT on 127.0.0.1, send GET PATH, compare status and body. Repeatable.",
)
@click.option(
    "--cmd-probe",
    is_flag=True,
    help="Run the image's command to completion and compare exit code and stdout "
    "(the default without --http-probe).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds each run may take, from start to the last probe answer.",
)
@click.option(
    "--include",
    "includes",
    multiple=True,
    metavar="PATH",
    help="Keep PATH (and everything under it) even if the run did not touch it. Repeatable.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Run the minimized image with the same probes and fail if any answer differs.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to unpack and trace (default: a temporary directory, removed afterwards).",
)
def minimize_command(
    source: str,
    dest: str,
    http_probes: tuple[str, ...],
    cmd_probe: bool,
    timeout: float,
    includes: tuple[str, ...],
    verify: bool,
    work_dir: Path | None,
) -> None:
    """Run SOURCE under probes, keep what it touched and needs, write the result to DEST.

    SOURCE and DEST are image references: docker-archive:PATH, oci:DIR[:REF] or
    docker-daemon:NAME:TAG.
    """
    started = time.monotonic()
    if cmd_probe and http_probes:
        raise click.UsageError("use either --cmd-probe or --http-probe, not both")
    options = MinimizeOptions(
        http_probes=[HttpProbe.parse(text) for text in http_probes],
        timeout=timeout,
        includes=list(includes),
        verify=verify,
    )
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="edgetrim-", dir=work_dir) as work,
        open_image(source) as image,
    ):
        result = minimize(image, options, Path(work), source=source)
        digest = write_image(result.image, dest)
    _print_summary(result, dest, str(digest), time.monotonic() - started)


def _print_summary(result: MinimizeResult, dest: str, digest: str, seconds: float) -> None:
    before, after = result.before, result.after
    removed = before.files - after.files
    click.echo(f"{'':18}{'original':>14}{'minimized':>14}")
    click.echo(f"{'files':18}{before.files:>14,}{after.files:>14,}")
    click.echo(f"{'content bytes':18}{before.content_bytes:>14,}{after.content_bytes:>14,}")
    click.echo(f"{'stored blob bytes':18}{before.blob_bytes:>14,}{after.blob_bytes:>14,}")
    ratio = after.content_bytes / before.content_bytes if before.content_bytes else 1.0
    click.echo(
        f"kept {after.files:,} files, removed {removed:,}; content is {ratio:.1%} of the original"
    )
    for answer in result.original_run.answers:
        verdict = "same answer from the minimized image" if result.minimized_run else "not verified"
        click.echo(f"probe {answer.describe()}: {verdict}")
    click.echo(f"wrote {dest} ({digest}) in {seconds:.1f} s")
