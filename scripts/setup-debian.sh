#!/bin/sh
# Prepare a Debian 12 machine to run and test edgetrim. Run it as root from any folder:
#   scripts/setup-debian.sh
# Steps: install the Debian packages below, create .venv in the repository with edgetrim and its
# test extras, start the private Docker engine (scripts/start-docker.sh) and build the base image
# (scripts/build-base-image.sh). Every step is skipped or repeated harmlessly on a second run.
# Each step's name is printed when it starts. The tools' own output goes to a temporary log,
# whose end is printed only if a step fails.
set -eu

# What each package is for:
#   docker.io        the engine that builds and stores the example and test images
#   runc, strace     run a container and record the files it opens, for edgetrim minimize
#   skopeo, umoci    independent tools to copy and unpack images, for checking edgetrim's output
#   mmdebstrap       builds the root file system of the base image
#   docker-registry  a local registry for tests
#   python3-venv     the virtual environment that edgetrim is installed in
#   chromium         renders the page of `edgetrim analyze --html` in a test
packages="docker.io runc strace skopeo umoci mmdebstrap docker-registry python3-venv chromium"

repo=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-debian: must run as root, because apt-get and dockerd need it. Try: sudo $0" >&2
    exit 1
fi
log=$(mktemp "${TMPDIR:-/tmp}/edgetrim-setup.XXXXXX")
trap 'rm -f "$log"' EXIT

# Print the step's name, then run the command with its output in the log. If it fails, print
# the end of the log and stop.
run_logged() {
    what=$1
    shift
    echo "setup-debian: $what ..."
    if ! "$@" >>"$log" 2>&1; then
        echo "setup-debian: $what failed. The last lines of its output:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

missing=""
for package in $packages; do
    if ! dpkg-query -W -f '${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed; then
        missing="$missing $package"
    fi
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    run_logged "apt-get update" apt-get update
    # shellcheck disable=SC2086  # $missing is a list of package names
    run_logged "apt-get install$missing" apt-get install -y $missing
    echo "setup-debian: installed$missing"
else
    echo "setup-debian: Debian packages already installed: $packages"
fi

if [ ! -x "$repo/.venv/bin/python" ]; then
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup-debian: edgetrim needs Python 3.11 or newer, but python3 is $(python3 -V 2>&1)" >&2
        exit 1
    fi
    run_logged "python3 -m venv $repo/.venv" python3 -m venv "$repo/.venv"
fi
# Reinstalling on every run picks up dependencies added to pyproject.toml since the last one.
run_logged "pip install -e '.[test]'" "$repo/.venv/bin/pip" install -e "${repo}[test]"
echo "setup-debian: $("$repo/.venv/bin/edgetrim" --version 2>/dev/null ||
    "$repo/.venv/bin/python" -c 'import edgetrim; print("edgetrim", edgetrim.__version__)')" \
    "installed in $repo/.venv ($("$repo/.venv/bin/python" -V))"

run_logged "scripts/start-docker.sh" "$repo/scripts/start-docker.sh"
echo "setup-debian: Docker engine running at unix:///run/edgetrim-docker/docker.sock"

run_logged "scripts/build-base-image.sh" "$repo/scripts/build-base-image.sh"
echo "setup-debian: base image edgetrim/debian:bookworm is ready"
