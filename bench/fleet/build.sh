#!/bin/sh
# Build every image of the fleet as edgetrim-fleet/NAME:latest, from bench/fleet/NAME/.
#   Usage: bench/fleet/build.sh [NAME...]      (default: every folder with a Dockerfile)
# Builds run with --network=host because the private engine has no bridge network. The base
# image edgetrim/debian:bookworm is built first if it is missing.
set -eu

fleet=$(cd "$(dirname "$0")" && pwd)
export DOCKER_HOST="${DOCKER_HOST:-unix:///run/edgetrim-docker/docker.sock}"

"$fleet/../../scripts/build-base-image.sh"

if [ "$#" -eq 0 ]; then
    set --
    for dockerfile in "$fleet"/*/Dockerfile; do
        set -- "$@" "$(basename "$(dirname "$dockerfile")")"
    done
fi

failed=""
for name in "$@"; do
    if [ ! -f "$fleet/$name/Dockerfile" ]; then
        echo "build.sh: no Dockerfile in $fleet/$name" >&2
        exit 2
    fi
    echo "building edgetrim-fleet/$name:latest" >&2
    if ! docker build --network=host -t "edgetrim-fleet/$name:latest" "$fleet/$name"; then
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    echo "build.sh: these images failed to build:$failed" >&2
    exit 1
fi
