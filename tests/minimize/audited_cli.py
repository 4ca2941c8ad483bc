"""Run the edgetrim CLI under an audit hook that records every folder and file it creates.

Usage: ``python -m tests.minimize.audited_cli LOG ARGS...``, from the repository root. Each line
of LOG is ``mkdir PATH`` or ``create PATH`` as Python saw the call, so a path may be relative
to a directory descriptor. The last line is ``maxrss KIB``, the peak memory of the process.
"""

from __future__ import annotations

import os
import resource
import sys


def main() -> None:
    log_path, args = sys.argv[1], sys.argv[2:]
    log = open(log_path, "w", buffering=1)  # noqa: SIM115 - open until the process ends

    def record(kind: str, path: object) -> None:
        if isinstance(path, str | bytes | os.PathLike):
            log.write(f"{kind} {os.fsdecode(path)}\n")

    def hook(event: str, event_args: tuple) -> None:
        if event == "os.mkdir":
            record("mkdir", event_args[0])
        elif event == "open" and isinstance(event_args[2], int) and event_args[2] & os.O_CREAT:
            record("create", event_args[0])

    sys.addaudithook(hook)
    sys.argv = ["edgetrim", *args]
    try:
        from edgetrim.cli.main import main as edgetrim_main

        edgetrim_main()
    finally:
        log.write(f"maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")


if __name__ == "__main__":
    main()
