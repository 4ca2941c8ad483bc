"""Allow ``python -m edgetrim``."""

from edgetrim.cli.main import main

main()
