"""The ``edgetrim`` command: global options, logging, and the mapping of errors to exit codes.

Exit codes: 0 success, 1 a check failed (verification or a policy), 2 an error in the input or
the environment. Expected errors print one line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click

from edgetrim import __version__
from edgetrim.errors import EdgetrimError

INTERNAL_ERROR_EXIT = 3

# Each subcommand's module, imported only when that subcommand runs. The Docker SDK, httpx and
# the minimize pipeline took about 0.3 s to import (python -X importtime, 2 cores), so analyze
# no longer pays for them before it reads an image.
_COMMANDS = {
    "analyze": ("edgetrim.cli.analyze", "analyze_command"),
    "copy": ("edgetrim.cli.copy", "copy_command"),
    "minimize": ("edgetrim.cli.minimize", "minimize_command"),
}


class _LazyGroup(click.Group):
    """A command group that imports a subcommand's module when the subcommand is looked up."""

    def list_commands(self, context: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetrim")
@click.option(
    "-v", "--verbose", count=True, help="Log the steps of a run (-v) or every file event (-vv)."
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(context: click.Context, verbose: int, debug: bool) -> None:
    """Fit container images to edge devices."""
    context.obj = {"debug": debug}
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpx logs every request at INFO; edgetrim's own registry client logs retries and errors.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Run the CLI and turn exceptions into exit codes and one-line messages."""
    debug = "--debug" in sys.argv[1:]
    # SIGTERM (from timeout, CI cancellation or systemctl stop) cleans up like Ctrl-C: the
    # container is stopped and the temporary work directory removed.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("edgetrim: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except EdgetrimError as exc:
        if debug:
            raise
        click.echo(f"edgetrim: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("edgetrim: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last resort for bugs, with a way to see them
        if debug:
            raise
        click.echo(
            f"edgetrim: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug and report it)",
            err=True,
        )
        sys.exit(INTERNAL_ERROR_EXIT)


if __name__ == "__main__":
    main()
