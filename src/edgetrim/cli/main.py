"""The ``edgetrim`` command: global options, logging, and the mapping of errors to exit codes.

Exit codes: 0 success, 1 a check failed (verification or a policy), 2 an error in the input or
the environment, 3 an internal error, 130 interrupted (Ctrl-C or SIGTERM). Expected errors print
one line; ``--debug`` adds the traceback.
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
    """A command group that imports a subcommand's module when the subcommand is looked up.

    Each subcommand also gets ``-v`` and ``--debug``, so that they work after the command's
    name as well as before it.
    """

    def list_commands(self, context: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        _add_logging_options(command)
        return command


def _add_logging_options(command: click.Command) -> None:
    """Add ``-v`` and ``--debug`` to a subcommand, once, without passing them to its function."""
    if any(parameter.name == "verbose" for parameter in command.params):
        return
    command.params.append(
        click.Option(
            ["-v", "--verbose"],
            count=True,
            expose_value=False,
            callback=_more_verbose,
            help="Log the steps of a run (-v) or every file event (-vv), the same as before the "
            "command.",
        )
    )
    # main() reads --debug from anywhere in the arguments, so this option only lets click accept
    # it after the command's name.
    command.params.append(
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            help="Show tracebacks for errors, the same as before the command.",
        )
    )


def _more_verbose(context: click.Context, parameter: click.Parameter, count: int) -> None:
    """Add a subcommand's ``-v`` count to the one given before the command."""
    if not count:
        return
    # context.obj is None when a test invokes the subcommand without the group.
    settings = context.obj if isinstance(context.obj, dict) else {}
    settings["verbose"] = settings.get("verbose", 0) + count
    logging.getLogger().setLevel(_log_level(settings["verbose"]))


def _log_level(verbose: int) -> int:
    return logging.WARNING - 10 * min(verbose, 2)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetrim")
@click.option(
    "-v", "--verbose", count=True, help="Log the steps of a run (-v) or every file event (-vv)."
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(context: click.Context, verbose: int, debug: bool) -> None:
    """Fit container images to edge devices."""
    context.obj = {"debug": debug, "verbose": verbose}
    logging.basicConfig(
        level=_log_level(verbose),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO; edgetrim's own registry client logs retries and errors.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _interrupt(signum: int, frame: object) -> None:
    """Start the cleanup on the first SIGINT or SIGTERM, and ignore both signals from then on.

    A second signal would otherwise interrupt the cleanup and leave the work folder, or a
    container, behind. SIGKILL still stops edgetrim at once.
    """
    signal.signal(signal.SIGINT, _while_cleaning_up)
    signal.signal(signal.SIGTERM, _while_cleaning_up)
    raise KeyboardInterrupt


_cleanup_message_written = False


def _while_cleaning_up(signum: int, frame: object) -> None:
    global _cleanup_message_written
    if _cleanup_message_written:
        return
    _cleanup_message_written = True
    sys.stderr.write(
        f"edgetrim: {signal.Signals(signum).name} ignored while cleaning up; "
        "SIGKILL stops at once but may leave the work folder behind\n"
    )


def _exit_interrupted() -> None:
    """Print the message of an interrupted command and exit with 130.

    Python resets the signals that have handlers in Python to their default action when it
    exits, so a SIGTERM sent at that moment would kill the process with another exit status.
    Ignored signals stay ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    click.echo("edgetrim: interrupted", err=True)
    sys.exit(130)


def main() -> None:
    """Run the CLI and turn exceptions into exit codes and one-line messages."""
    debug = "--debug" in sys.argv[1:]
    # SIGTERM (from timeout, CI cancellation or systemctl stop) cleans up like Ctrl-C: the
    # container is stopped and the temporary work directory removed.
    # A SIGINT that the parent ignores (a background job of a script) stays ignored.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _exit_interrupted()
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
        _exit_interrupted()
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
