#!/bin/sh
# Run edgetrim's tests against the private Docker engine. Run it as root, because the engine and
# the runc+strace tests need root:
#   scripts/run-tests.sh [PYTEST ARGS...]      e.g. -q, -k minimize, tests/test_examples_build.py
# It starts the engine if it is not running, then runs pytest from the repository root, so test
# paths are relative to that root. It uses .venv from scripts/setup-debian.sh, or python3 without
# it, and exits with pytest's status (5 when no test ran).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/start-docker.sh
export DOCKER_HOST=unix:///run/edgetrim-docker/docker.sock

python=python3
if [ -x .venv/bin/python ]; then
    python=.venv/bin/python
fi
exec "$python" -m pytest "$@"
