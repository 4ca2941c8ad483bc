"""``edgetrim minimize SOURCE DEST``: trace the image under probes and write a smaller image."""

from __future__ import annotations

import contextlib
import errno
import logging
import shlex
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click

from edgetrim.cli.options import platform_option, registry_options, registry_settings
from edgetrim.errors import EdgetrimError, InvalidOptionError
from edgetrim.fs.unpack import remove_tree
from edgetrim.image.model import Platform
from edgetrim.minimize.keeplist import read_keep_list, write_keep_list
from edgetrim.minimize.packages import cyclonedx_sbom
from edgetrim.minimize.pipeline import MinimizeOptions, MinimizeResult, minimize
from edgetrim.minimize.surface import surface_rows
from edgetrim.trace.probes import ExecProbe, HostProbe, HttpProbe, TcpProbe
from edgetrim.trace.runner import ServiceProbes, finish_cleanup
from edgetrim.transports import Transport, open_image, write_image, written_digest_name
from edgetrim.transports._atomic import write_bytes
from edgetrim.transports.reference import check_destination, check_output_path, parse_reference

log = logging.getLogger(__name__)

# The errno values of a full filesystem or an exhausted disk quota.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class WorkFolderError(EdgetrimError):
    """The work folder could not be created or filled up."""


class _MinimizeCommand(click.Command):
    """The minimize command, which lets ``--cmd-probe=ARGS`` pass ARGS that start with "-".

    When an option's value is optional, as that of ``--cmd-probe`` is, click (checked with
    8.5.1) takes a value that starts with "-" for the next option, even after "=". A leading
    space keeps click from doing so and changes nothing once ARGS are split into words.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        for index, arg in enumerate(args):
            if arg == "--":
                rewritten += args[index:]
                break
            name, equals, value = arg.partition("=")
            if name == "--cmd-probe" and equals and value.startswith("-"):
                rewritten += ["--cmd-probe", " " + value]
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@click.command(
    "minimize",
    cls=_MinimizeCommand,
    short_help="Run SOURCE under probes and keep in DEST only the files it needs.",
)
@click.argument("source")
@click.argument("dest")
@click.option(
    "--http-probe",
    "http_probes",
    multiple=True,
    metavar="PORT[/PATH][,method=M][,status=N]",
    help="Wait for PORT on 127.0.0.1, send the request, compare status and body. Repeatable.",
)
@click.option(
    "--tcp-probe",
    "tcp_probes",
    multiple=True,
    metavar="PORT",
    help="Wait until PORT on 127.0.0.1 accepts a connection. Repeatable.",
)
@click.option(
    "--exec-probe",
    "exec_probes",
    multiple=True,
    metavar="CMD",
    help="Run CMD inside the running container and compare exit code and stdout. "
    "Its files are kept. Repeatable.",
)
@click.option(
    "--probe-cmd",
    "host_probes",
    multiple=True,
    metavar="CMD",
    help="Run the shell command CMD on the host while the container runs (it shares the "
    "host's network) and compare exit code and stdout. Repeatable.",
)
@click.option(
    "--probe-duration",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to keep a service running after its probes, to trace work it does later.",
)
@click.option(
    "--cmd-probe",
    "command_runs",
    multiple=True,
    is_flag=False,
    flag_value="",
    metavar="[ARGS]",
    help="Run the image to completion, with ARGS in place of its cmd if given, and compare "
    "exit code and stdout. ARGS that start with '-' need '=': --cmd-probe='--version'. "
    "Repeatable; the default when no other probe is given.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds each run may take, from start to the last probe response.",
)
@click.option(
    "--include",
    "includes",
    multiple=True,
    metavar="PATH",
    help="Keep PATH (and everything under it) even if no run touched it. Repeatable.",
)
@click.option(
    "--keep-list",
    "keep_list",
    type=click.Path(path_type=Path),
    help="Keep the paths of this keep-list instead of tracing; runs only verify, and only "
    "when probes are given.",
)
@click.option(
    "--write-keep-list",
    "keep_list_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the kept paths and the reason for each to this file.",
)
@click.option(
    "--sbom",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a CycloneDX JSON SBOM of the minimized image's packages to this file.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Run the minimized image with the same probes and fail if any response differs.",
)
@platform_option("minimize")
@registry_options
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for all temporary data: the exported image, the unpacked copies, the runs "
    "and the new layer (default: the system's temporary folder). A temporary folder is "
    "made inside it and removed afterwards. If DIRECTORY does not exist, it is created, and "
    "removed at the end, but its parent folder must exist.",
)
def minimize_command(
    source: str,
    dest: str,
    http_probes: tuple[str, ...],
    tcp_probes: tuple[str, ...],
    exec_probes: tuple[str, ...],
    host_probes: tuple[str, ...],
    probe_duration: float,
    command_runs: tuple[str, ...],
    timeout: float,
    includes: tuple[str, ...],
    keep_list: Path | None,
    keep_list_out: Path | None,
    sbom: Path | None,
    verify: bool,
    platform: Platform | None,
    ca_cert: Path | None,
    insecure: bool,
    work_dir: Path | None,
) -> None:
    """Run SOURCE under probes, keep what it touched and needs, write the result to DEST.

    SOURCE and DEST are image references: docker-archive:PATH, oci:DIR[:REF],
    oci-archive:FILE[:REF], docker://HOST/REPO[:TAG] or docker-daemon:NAME:TAG.
    """
    started = time.monotonic()
    destination = check_destination(dest)
    for option, path in (("--sbom", sbom), ("--write-keep-list", keep_list_out)):
        if path is not None:
            check_output_path(path, f"{option} {path}")
    source_reference = parse_reference(source)
    source_path = source_reference.path
    if source_path is not None and source_path.absolute() == _absolute(destination.path):
        raise InvalidOptionError(
            f"DEST {dest} is the same as SOURCE; write the minimized image to another path"
        )
    options = MinimizeOptions(
        service=ServiceProbes(
            tcp=tuple(TcpProbe.parse(text) for text in tcp_probes),
            http=tuple(HttpProbe.parse(text) for text in http_probes),
            exec=tuple(ExecProbe.parse(text) for text in exec_probes),
            host=tuple(HostProbe.parse(text) for text in host_probes),
            duration=probe_duration,
        ),
        command_runs=[_command_args(text) for text in command_runs],
        timeout=timeout,
        includes=list(includes),
        verify=verify,
        keep_list=read_keep_list(keep_list) if keep_list is not None else None,
        keep_list_path=keep_list,
    )
    # registry_settings imports httpx, so it is called only for a docker:// reference.
    registry = None
    if Transport.DOCKER in (source_reference.transport, destination.transport):
        registry = registry_settings(ca_cert, insecure)
    try:
        with (
            _work_folder(work_dir) as work,
            open_image(source, platform=platform, registry=registry) as image,
        ):
            result = minimize(image, options, work, source=source)
            log.info("writing %s", dest)
            digest = write_image(result.image, dest, registry=registry)
    except OSError as exc:
        # DEST is written by write_image, which raises ImageWriteError for its own errors, so
        # a full filesystem here is that of the temporary data.
        if exc.errno not in _NO_SPACE:
            raise
        folder = work_dir if work_dir is not None else Path(tempfile.gettempdir())
        raise WorkFolderError(
            f"no space left for the temporary data in {folder} ({exc.strerror}); free space "
            "there or pass --work-dir on a filesystem with room for about twice the image's size"
        ) from exc
    if keep_list_out is not None:
        header = [f"source: {source}", f"source config: {image.config.digest}"]
        write_keep_list(keep_list_out, sorted(result.keep.reasons.items()), header=header)
    if sbom is not None:
        text = cyclonedx_sbom(
            result.packages, image_name=dest, config_digest=str(result.image.config.digest)
        )
        write_bytes(sbom.absolute(), text.encode())
    _print_summary(result, dest, str(digest), time.monotonic() - started)


def _absolute(path: Path | None) -> Path | None:
    return path.absolute() if path is not None else None


@contextlib.contextmanager
def _work_folder(parent: Path | None) -> Iterator[Path]:
    """Make the run's temporary folder in ``parent`` and remove it afterwards, however deep.

    A missing ``parent`` is created, but not its own parents, so that a mistyped --work-dir
    fails instead of making a new tree. A ``parent`` created here is removed at the end too.
    While the temporary folder exists, it is also the default folder of :mod:`tempfile`, so
    that temporary files made elsewhere (a ``docker-daemon:`` export, a decompressed archive)
    go to the folder that ``--work-dir`` names and not to the system's temporary folder.
    """
    created_parent = False
    try:
        if parent is not None and not parent.is_dir():
            parent.mkdir()
            created_parent = True
            log.info("created --work-dir %s, which is removed at the end", parent)
        work = Path(tempfile.mkdtemp(prefix="edgetrim-", dir=parent)).absolute()
    except FileNotFoundError as exc:
        if parent is None or parent.parent.is_dir():
            raise _work_folder_error(parent, exc) from exc
        raise WorkFolderError(
            f"cannot create --work-dir {parent}: its parent folder {parent.parent} does not "
            "exist; create it first or check the path"
        ) from exc
    except OSError as exc:
        raise _work_folder_error(parent, exc) from exc
    previous = tempfile.tempdir
    tempfile.tempdir = str(work)
    try:
        yield work
    finally:
        tempfile.tempdir = previous
        _remove_work_folder(work)
        if created_parent and parent is not None:
            try:
                parent.rmdir()
            except OSError as exc:
                log.warning("could not remove --work-dir %s (%s); remove it by hand", parent, exc)


def _work_folder_error(parent: Path | None, exc: OSError) -> WorkFolderError:
    folder = parent if parent is not None else Path(tempfile.gettempdir())
    return WorkFolderError(
        f"cannot create a temporary folder in {folder} ({exc.strerror}); "
        "pass --work-dir with a writable folder"
    )


def _remove_work_folder(folder: Path) -> None:
    """Remove ``folder``, and finish the removal if SIGINT or SIGTERM interrupts it."""
    log.info("removing %s", folder)
    try:
        finish_cleanup(lambda: remove_tree(folder))
    except OSError as exc:
        # Raising here would hide the outcome of the command, or the error that ended it.
        log.warning("could not remove %s (%s); remove it by hand", folder, exc)


def _command_args(text: str) -> list[str] | None:
    """Split --cmd-probe ARGS; no ARGS means the image's own cmd."""
    return shlex.split(text) if text.strip() else None


def _print_summary(result: MinimizeResult, dest: str, digest: str, seconds: float) -> None:
    before, after = result.before, result.after
    click.echo(f"{'':18}{'original':>14}{'minimized':>14}")
    click.echo(f"{'files':18}{before.files:>14,}{after.files:>14,}")
    click.echo(f"{'content bytes':18}{before.content_bytes:>14,}{after.content_bytes:>14,}")
    # The config blob counts too, so this is a little more than analyze's blob_bytes.
    click.echo(f"{'config+layer blobs':18}{before.blob_bytes:>14,}{after.blob_bytes:>14,}")
    ratio = after.content_bytes / before.content_bytes if before.content_bytes else 1.0
    removed = before.files - after.files
    click.echo(
        f"kept {after.files:,} files, removed {removed:,}; content is {ratio:.1%} of the original"
    )
    click.echo(f"{'attack surface':18}{'original':>14}{'minimized':>14}")
    for item, before_value, after_value in surface_rows(
        result.surface_before, result.surface_after
    ):
        click.echo(f"  {item:22}{before_value:>10}{after_value:>14}")
    verdict = "same answer from the minimized image" if result.verified else "not verified"
    for answer in result.answers:
        click.echo(f"probe {answer.describe()}: {verdict}")
    if not result.answers:
        click.echo(
            "not verified: no run was made, because --keep-list without probes only copies the "
            "listed files; add probes to run and compare both images"
        )
    click.echo(f"wrote {dest} ({written_digest_name(dest)} {digest}) in {seconds:.1f} s")
